"""8 repeat_supplier: the same supplier gets 3 or more direct awards from the same buyer within 12 months."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.text import cents_expr, day, document, link_expr, money

GROUP = ["buyer_cnpj", "supplier_id"]
MODALIDADE_LABEL = {8: "dispensa", 9: "inexigibilidade"}


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
        # Only the columns the awards need: filtering and sorting the wide frame would copy all of them.
        contratos = data.contratos_enriched.select(
            *GROUP,
            "signed_at",
            "published_at",
            "purchase_control_number",
            "control_number",
            "value",
            "modalidade_id",
            "supplier_name",
        ).filter(pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES))
        dated = contratos.with_columns(
            pl.coalesce("signed_at", pl.col("published_at").dt.date()).alias("award_date")
        )
        usable = dated.drop_nulls([*GROUP, "award_date"])
        # A pair with fewer contratos than `minimum` cannot have `minimum` awards: most pairs, dropped before
        # the sort and the grouping by contratação.
        candidates = usable.filter(pl.len().over(GROUP) >= minimum)
        # One award per contratação (several contratos or empenhos of one purchase count once).
        awards = (
            candidates.sort("award_date", "control_number")
            .group_by([*GROUP, "purchase_control_number"], maintain_order=True)
            .agg(
                pl.col("award_date").first(),
                pl.col("control_number").first().alias("contrato"),
                pl.col("value").sum().alias("value"),
                pl.col("modalidade_id").first(),
                pl.col("supplier_name").first(),
            )
            .filter(pl.len().over(GROUP) >= minimum)
        )
        parents = (
            data.contratacoes.select(
                pl.col("control_number").alias("purchase_control_number"),
                pl.col("buyer_cnpj").alias("purchase_cnpj"),
                pl.col("year").alias("purchase_year"),
                pl.col("sequence").alias("purchase_sequence"),
            )
            .filter(pl.col("purchase_control_number").is_in(awards["purchase_control_number"].implode()))
            .unique("purchase_control_number")
        )
        awards = awards.join(parents, on="purchase_control_number", how="left").sort(
            [*GROUP, "award_date", "purchase_control_number"]
        )
        findings = self._findings(awards, minimum, months)
        return RuleResult(
            findings=findings,
            skipped=contratos.height - usable.height,
            meta={"population": usable.height, "min_awards": minimum, "window_months": months},
        )

    def _findings(self, awards: pl.DataFrame, minimum: int, months: int) -> list[Finding]:
        """Each award's largest window of `minimum` or more awards within `months`, one finding per award.

        The evidence of one award is column-wise formatted up front; the message and the member list of a
        window are built once and shared by every award whose finding uses that window.
        """
        columns = awards.select(
            "buyer_cnpj",
            "supplier_id",
            "award_date",
            # The same day `months` earlier (the month's last day when it is shorter): a window's start.
            pl.col("award_date").dt.offset_by(f"{-months}mo").alias("earliest"),
            "purchase_control_number",
            "value",
            "supplier_name",
            pl.struct(
                pl.col("purchase_control_number").alias("record"),
                "contrato",
                pl.col("award_date").dt.strftime("%Y-%m-%d").alias("date"),
                cents_expr(pl.col("value")).alias("value"),
                pl.col("modalidade_id")
                .replace_strict(MODALIDADE_LABEL, default=None, return_dtype=pl.String)
                .alias("modalidade"),
            ).alias("member"),
            link_expr(
                RecordKind.CONTRATACAO,
                pl.col("purchase_cnpj"),
                pl.col("purchase_year"),
                pl.col("purchase_sequence"),
            ).alias("link"),
        )
        buyers = columns["buyer_cnpj"].to_list()
        suppliers = columns["supplier_id"].to_list()
        dates: list[date] = columns["award_date"].to_list()
        earliests: list[date] = columns["earliest"].to_list()
        records: list[str] = columns["purchase_control_number"].to_list()
        # Largest window per contratação, as (start, end, own row) positions; `awards` is sorted by buyer,
        # supplier and date, so each pair's awards are consecutive rows (a contratação with contratos of
        # several suppliers keeps the first of its largest windows).
        windows: dict[str, tuple[int, int, int]] = {}
        pair_start = 0
        for pair_end in range(1, len(records) + 1):
            if pair_end < len(records) and (buyers[pair_end], suppliers[pair_end]) == (
                buyers[pair_start],
                suppliers[pair_start],
            ):
                continue
            start = pair_start
            for end in range(pair_start, pair_end):
                earliest = earliests[end]
                while dates[start] < earliest:
                    start += 1
                if end - start + 1 >= minimum:
                    for member in range(start, end + 1):
                        best = windows.get(records[member])
                        if best is None or end - start > best[1] - best[0]:
                            windows[records[member]] = (start, end, member)
            pair_start = pair_end
        if not windows:
            return []
        values: list[float | None] = columns["value"].to_list()
        names = columns["supplier_name"].to_list()
        members: list[dict[str, Any]] = columns["member"].to_list()
        links = columns["link"].to_list()
        shared: dict[tuple[int, int], tuple[str, list[dict[str, Any]], int, float]] = {}
        day_of = cache(day)  # few distinct dates: each formatted once
        findings = []
        for record in sorted(windows):
            start, end, position = windows[record]
            window = shared.get((start, end))
            if window is None:
                count = end - start + 1
                total = sum(value or 0.0 for value in values[start : end + 1])
                message = (
                    f"Fornecedor {document(suppliers[start])} recebeu {count} contratações diretas do mesmo "
                    f"órgão entre {day_of(dates[start])} e {day_of(dates[end])}, em até {months} meses, "
                    f"somando {money(total)}."
                )
                score = round(min(0.8, 0.4 + 0.1 * (count - 3)), 3)
                window = shared[(start, end)] = (message, members[start : end + 1], count, score)
            message, window_members, count, score = window
            buyer, supplier = buyers[position], suppliers[position]
            findings.append(
                Finding(
                    rule=self.id,
                    rule_version=self.version,
                    record=record,
                    severity=Severity.MEDIUM,
                    score=score,
                    message=message,
                    evidence={
                        "supplier_id": supplier,
                        "supplier_name": names[position],
                        "buyer_cnpj": buyer,
                        "awards": count,
                        "window_months": months,
                        "peer_group": {"buyer_cnpj": buyer, "supplier_id": supplier},
                        "records": window_members,
                        "link": links[position],
                    },
                    legal_basis=None,
                )
            )
        return findings
