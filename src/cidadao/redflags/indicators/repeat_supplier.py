"""8 repeat_supplier: the same supplier gets 3 or more direct awards from the same buyer within 12 months."""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Mapping
from datetime import date
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.text import cents, day, document, link, money

GROUP = ["buyer_cnpj", "supplier_id"]
MODALIDADE_LABEL = {8: "dispensa", 9: "inexigibilidade"}


def _months_before(value: date, months: int) -> date:
    """The same day `months` earlier, or the last day of that month when it is shorter."""
    year, month = divmod(value.year * 12 + value.month - 1 - months, 12)
    return date(year, month + 1, min(value.day, calendar.monthrange(year, month + 1)[1]))


@register
class RepeatSupplier(Indicator):
    id = "repeat_supplier"
    version = "1"
    title = "Fornecedor recorrente em contratações diretas"
    description = (
        "O mesmo fornecedor recebe 3 ou mais contratações diretas (dispensa ou inexigibilidade) do mesmo "
        "órgão em até 12 meses; cada contratação da sequência é sinalizada."
    )
    legal_basis = None
    reference = (
        "Recorrência de adjudicações diretas ao mesmo fornecedor: OCP Red Flags for Integrity (2016); "
        "Lei 14.133/2021, arts. 5º (impessoalidade) e 75, §1º"
    )
    severity = Severity.MEDIUM
    scope = "supplier"
    defaults: ClassVar[Mapping[str, Any]] = {"min_awards": 3, "window_months": 12}
    needs = ("modalidade_id", "buyer_cnpj", "supplier_id", "signed_at", "published_at")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        minimum, months = int(params["min_awards"]), int(params["window_months"])
        contratos = data.contratos_enriched.filter(pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES))
        dated = contratos.with_columns(
            pl.coalesce("signed_at", pl.col("published_at").dt.date()).alias("award_date")
        )
        usable = dated.drop_nulls([*GROUP, "award_date"])
        parents = data.contratacoes.select(
            pl.col("control_number").alias("purchase_control_number"),
            pl.col("buyer_cnpj").alias("purchase_cnpj"),
            pl.col("year").alias("purchase_year"),
            pl.col("sequence").alias("purchase_sequence"),
        ).unique("purchase_control_number")
        # One award per contratação (several contratos or empenhos of one purchase count once).
        awards = (
            usable.sort("award_date", "control_number")
            .group_by([*GROUP, "purchase_control_number"], maintain_order=True)
            .agg(
                pl.col("award_date").first(),
                pl.col("control_number").first().alias("contrato"),
                pl.col("value").sum().alias("value"),
                pl.col("modalidade_id").first(),
                pl.col("object").first(),
                pl.col("supplier_name").first(),
            )
            .filter(pl.len().over(GROUP) >= minimum)
            .join(parents, on="purchase_control_number", how="left")
            .sort([*GROUP, "award_date", "purchase_control_number"])
        )
        windows: dict[str, list[dict[str, Any]]] = {}
        # `awards` is sorted by buyer, supplier and date: each pair's awards are consecutive rows.
        pairs = itertools.groupby(
            awards.iter_rows(named=True), key=lambda row: (row["buyer_cnpj"], row["supplier_id"])
        )
        for _, group in pairs:
            rows = list(group)
            start = 0
            for end, row in enumerate(rows):
                earliest = _months_before(row["award_date"], months)
                while rows[start]["award_date"] < earliest:
                    start += 1
                if end - start + 1 >= minimum:
                    window = rows[start : end + 1]
                    for member in window:
                        key = member["purchase_control_number"]
                        if len(window) > len(windows.get(key, ())):
                            windows[key] = window
        findings = [self._finding(record, windows[record], months) for record in sorted(windows)]
        return RuleResult(
            findings=findings,
            skipped=contratos.height - usable.height,
            meta={"population": usable.height, "min_awards": minimum, "window_months": months},
        )

    def _finding(self, record: str, window: list[dict[str, Any]], months: int) -> Finding:
        row = next(member for member in window if member["purchase_control_number"] == record)
        count = len(window)
        buyer, supplier = row["buyer_cnpj"], row["supplier_id"]
        first, last = window[0]["award_date"], window[-1]["award_date"]
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=record,
            severity=Severity.MEDIUM,
            score=round(min(0.8, 0.4 + 0.1 * (count - 3)), 3),
            message=(
                f"Fornecedor {document(supplier)} recebeu {count} contratações diretas do mesmo órgão entre "
                f"{day(first)} e {day(last)}, em até {months} meses, somando "
                f"{money(sum(member['value'] or 0.0 for member in window))}."
            ),
            evidence={
                "supplier_id": supplier,
                "supplier_name": row["supplier_name"],
                "buyer_cnpj": buyer,
                "awards": count,
                "window_months": months,
                "peer_group": {"buyer_cnpj": buyer, "supplier_id": supplier},
                "records": [
                    {
                        "record": member["purchase_control_number"],
                        "contrato": member["contrato"],
                        "date": member["award_date"].isoformat(),
                        "value": None if member["value"] is None else cents(member["value"]),
                        "modalidade": MODALIDADE_LABEL.get(member["modalidade_id"]),
                    }
                    for member in window
                ],
                "link": link(
                    RecordKind.CONTRATACAO,
                    row["purchase_cnpj"],
                    row["purchase_year"],
                    row["purchase_sequence"],
                ),
            },
            legal_basis=None,
        )
