"""7 emergency_over_1y: emergency direct award (art. 75 VIII) beyond one year, or a repeated one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import with_inciso
from cidadao.redflags.text import cents, day, document, link

LEGAL_BASIS = "Lei 14.133/2021, art. 75, VIII"
GROUP = ["buyer_cnpj", "supplier_id"]
AMPARO = ["amparo_name", "amparo_code"]
COLUMNS = [
    *GROUP,
    *AMPARO,
    "control_number",
    "purchase_control_number",
    "signed_at",
    "term_start",
    "term_end",
    "value_global",
    "year",
    "sequence",
]


@register
class EmergencyOver1y(Indicator):
    id = "emergency_over_1y"
    version = "1"
    title = "Contratação emergencial acima de um ano ou recontratada"
    description = (
        "Contrato de dispensa emergencial (art. 75, VIII) com vigência superior a um ano, ou novo contrato "
        "emergencial do mesmo órgão com o mesmo fornecedor: a lei veda prorrogação e recontratação."
    )
    legal_basis = LEGAL_BASIS
    reference = "Lei 14.133/2021, art. 75, VIII (prazo máximo de 1 ano, vedadas prorrogação e recontratação)"
    severity = Severity.HIGH
    scope = "supplier"
    defaults: ClassVar[Mapping[str, Any]] = {"max_months": 12}
    needs = ("amparo_name", "amparo_code", "term_start", "term_end", "signed_at", "buyer_cnpj", "supplier_id")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        months = int(params["max_months"])
        # The inciso is read once per distinct amparo; only the emergency contratos are then kept.
        amparos = with_inciso(data.contratos_enriched.select(AMPARO).unique()).filter(
            pl.col("inciso") == "VIII"
        )
        emergency = (
            data.contratos_enriched.select(COLUMNS)
            .join(amparos.drop("inciso"), on=AMPARO, how="semi", nulls_equal=True, maintain_order="left")
            .with_columns(pl.coalesce("signed_at", "term_start").alias("award_date"))
        )
        has_term = pl.col("term_start").is_not_null() & pl.col("term_end").is_not_null()
        dated = pl.col("buyer_cnpj").is_not_null() & pl.col("supplier_id").is_not_null()
        dated = dated & pl.col("award_date").is_not_null()
        # Each dated contract gets the buyer-supplier pair's emergency contracts in date order.
        history = emergency.filter(dated).select(
            "control_number",
            pl.col("control_number")
            .sort_by("award_date", "control_number")
            .over(GROUP, mapping_strategy="join")
            .alias("pair_history"),
        )
        checked = emergency.join(
            history, on="control_number", how="left", maintain_order="left"
        ).with_columns(
            pl.when(has_term).then(pl.col("term_start").dt.offset_by(f"{months}mo")).alias("term_ceiling")
        )
        # Only rows that can be flagged reach Python: a term over the ceiling, or not the pair's first.
        candidates = checked.filter(
            (pl.col("term_ceiling").is_not_null() & (pl.col("term_end") > pl.col("term_ceiling")))
            | (pl.col("pair_history").list.first() != pl.col("control_number")).fill_null(False)
        )
        findings = []
        flagged_long = flagged_repeat = 0
        for row in candidates.iter_rows(named=True):
            too_long = row["term_ceiling"] is not None and row["term_end"] > row["term_ceiling"]
            pair: list[str] = row["pair_history"] or []
            earlier = pair[: pair.index(row["control_number"])] if pair else []
            if not too_long and not earlier:
                continue
            flagged_long += too_long
            flagged_repeat += bool(earlier)
            findings.append(self._finding(row, too_long, earlier, months))
        usable = emergency.filter(has_term | dated)
        return RuleResult(
            findings=findings,
            skipped=emergency.height - usable.height,
            meta={
                "population": emergency.height,
                "max_months": months,
                "over_term": flagged_long,
                "repeated": flagged_repeat,
            },
        )

    def _finding(self, row: dict[str, Any], too_long: bool, earlier: list[str], months: int) -> Finding:
        supplier = document(row["supplier_id"])
        if too_long:
            repeated = (
                f" e {len(earlier)} contrato(s) emergencial(is) anterior(es) com o fornecedor {supplier}"
                if earlier
                else ""
            )
            message = (
                f"Contrato emergencial com vigência de {day(row['term_start'])} a {day(row['term_end'])}, "
                f"acima do prazo máximo de {months} meses{repeated} ({LEGAL_BASIS})"
            )
        else:
            message = (
                f"Nova contratação emergencial do mesmo órgão com o fornecedor {supplier}, que já tinha "
                f"{len(earlier)} contrato(s) emergencial(is) anterior(es) ({LEGAL_BASIS})"
            )
        score = 0.7 + 0.15 * too_long + 0.15 * bool(earlier)
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=Severity.HIGH,
            score=round(min(1.0, score), 3),
            message=message,
            evidence={
                "term_start": None if row["term_start"] is None else row["term_start"].isoformat(),
                "term_end": None if row["term_end"] is None else row["term_end"].isoformat(),
                "max_months": months,
                "term_exceeded": too_long,
                "earlier_emergency_contracts": earlier,
                "value_global": None if row["value_global"] is None else cents(row["value_global"]),
                "buyer_cnpj": row["buyer_cnpj"],
                "supplier_id": row["supplier_id"],
                "purchase": row["purchase_control_number"],
                "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=LEGAL_BASIS,
        )
