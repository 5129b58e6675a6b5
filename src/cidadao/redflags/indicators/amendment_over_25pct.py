"""6 amendment_over_25pct: contrato global value over 25 % above its initial value (art. 125)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.text import cents, link, money, percent

LEGAL_BASIS = "Lei 14.133/2021, art. 125"
# Art. 125: the ceiling is 50 % for the renovation (reforma) of a building or of equipment.
RENOVATION = r"(?i)\breforma"


@register
class AmendmentOver25pct(Indicator):
    id = "amendment_over_25pct"
    version = "1"
    title = "Acréscimo contratual acima de 25 %"
    description = (
        "Contrato cujo valor global supera o valor inicial em mais de 25 % (50 % para reforma de edifício ou "
        "de equipamento), acima do limite de acréscimos unilaterais."
    )
    legal_basis = LEGAL_BASIS
    reference = "Lei 14.133/2021, art. 125"
    severity = Severity.HIGH
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {"max_increase": 0.25, "renovation_max_increase": 0.5}
    needs = ("value_initial", "value_global", "object")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        contratos = data.contratos_enriched
        usable = contratos.filter(
            pl.col("value_initial").is_not_null()
            & (pl.col("value_initial") > 0)
            & pl.col("value_global").is_not_null()
        )
        renovation = pl.col("object").str.contains(RENOVATION).fill_null(False)
        checked = usable.with_columns(
            (pl.col("value_global") / pl.col("value_initial") - 1.0).alias("increase"),
            renovation.alias("renovation"),
            pl.when(renovation)
            .then(pl.lit(float(params["renovation_max_increase"])))
            .otherwise(pl.lit(float(params["max_increase"])))
            .alias("ceiling"),
        )
        # Compare in cents so that float noise never turns exactly 25 % into "more than 25 %".
        over = checked.filter(
            (pl.col("value_global") * 100).round(0)
            > (pl.col("value_initial") * (1 + pl.col("ceiling")) * 100).round(0)
        )
        findings = []
        for row in over.iter_rows(named=True):
            increase, ceiling = row["increase"], row["ceiling"]
            maximum = row["value_initial"] * (1 + ceiling)
            excess = row["value_global"] - maximum
            findings.append(
                Finding(
                    rule=self.id,
                    rule_version=self.version,
                    record=row["control_number"],
                    severity=Severity.HIGH,
                    score=round(min(1.0, 0.6 + 0.4 * min(1.0, (increase - ceiling) / ceiling)), 3),
                    message=(
                        f"Contrato com valor global de {money(row['value_global'])} excede em "
                        f"{money(excess)} o máximo de {money(maximum)} (valor inicial de "
                        f"{money(row['value_initial'])} + {percent(ceiling, 0)} de acréscimos; {LEGAL_BASIS})"
                    ),
                    evidence={
                        "value_initial": cents(row["value_initial"]),
                        "value_global": cents(row["value_global"]),
                        "increase": round(increase, 4),
                        "max_increase": ceiling,
                        "max_value": cents(maximum),
                        "renovation": row["renovation"],
                        "modalidade_id": row["modalidade_id"],
                        "purchase": row["purchase_control_number"],
                        "buyer_cnpj": row["buyer_cnpj"],
                        "supplier_id": row["supplier_id"],
                        "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
                    },
                    legal_basis=LEGAL_BASIS,
                )
            )
        return RuleResult(
            findings=findings,
            skipped=contratos.height - usable.height,
            meta={
                "population": contratos.height,
                "max_increase": params["max_increase"],
                "renovation_max_increase": params["renovation_max_increase"],
                "flagged": over.height,
            },
        )
