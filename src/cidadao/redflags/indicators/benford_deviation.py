"""16 benford_deviation: a buyer's values do not follow Benford's first-digit law.

The deviation is a property of the buyer; the records flagged are those whose first digit is the most
over-represented (excess at least the buyer's MAD, or the largest excess), the purchases worth a look first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.stats import (
    BENFORD_EXPECTED,
    benford_mad,
    benford_proportions,
    excess_score,
    first_digit,
)
from cidadao.redflags.text import cents, link, money, number, percent

EXPECTED = pl.DataFrame(
    {"digit": list(BENFORD_EXPECTED), "expected": list(BENFORD_EXPECTED.values())},
    schema={"digit": pl.Int8, "expected": pl.Float64},
)


@register
class BenfordDeviation(Indicator):
    id = "benford_deviation"
    version = "1"
    title = "Valores do órgão fora da lei de Benford"
    description = (
        "Órgão com ao menos 300 valores de contratação (a partir de R$ 10,00) cuja distribuição do primeiro "
        "dígito se afasta da lei de Benford (MAD de Nigrini acima de 0,015); são sinalizadas as contratações "
        "cujo primeiro dígito está mais acima do esperado."
    )
    legal_basis = None
    reference = (
        "Nigrini (2012), 'Benford's Law: Applications for Forensic Accounting, Auditing, and Fraud "
        "Detection', Wiley, tabela 7.1 (MAD do primeiro dígito > 0,015: não conformidade)"
    )
    severity = Severity.LOW
    scope = "buyer"
    defaults: ClassVar[Mapping[str, Any]] = {"min_values": 300, "mad_threshold": 0.015, "min_value": 10.0}
    needs = ("buyer_cnpj", "value")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        population = data.contratacoes
        usable = population.drop_nulls(["buyer_cnpj", "value"])
        # Nigrini drops small amounts: below 10 the first digit says little about how a value was set.
        values = usable.filter(pl.col("value") >= params["min_value"]).with_columns(
            first_digit(pl.col("value")).alias("digit")
        )
        buyers = (
            values.group_by("buyer_cnpj")
            .agg(pl.len().alias("n"), *benford_proportions(pl.col("digit")))
            .filter(pl.col("n") >= params["min_values"])
            .with_columns(benford_mad().alias("mad"))
        )
        deviating = buyers.filter(pl.col("mad") > params["mad_threshold"])
        digits = (
            deviating.unpivot(
                index=["buyer_cnpj", "n", "mad"],
                on=[f"benford_{d}" for d in BENFORD_EXPECTED],
                variable_name="digit",
                value_name="observed",
            )
            .with_columns(pl.col("digit").str.strip_prefix("benford_").cast(pl.Int8))
            .join(EXPECTED, on="digit")
            .with_columns((pl.col("observed") - pl.col("expected")).alias("excess"))
        )
        over = digits.filter(
            (pl.col("excess") > 0)
            & (pl.col("excess") >= pl.min_horizontal("mad", pl.col("excess").max().over("buyer_cnpj")))
        ).with_columns(excess_score(pl.col("mad"), params["mad_threshold"]).alias("score"))
        flagged = values.join(over, on=["buyer_cnpj", "digit"])
        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={"buyers_evaluated": buyers.height, "buyers_deviating": deviating.height},
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        buyer = row["buyer_name"] or row["buyer_cnpj"]
        message = (
            f"O valor de {money(row['value'])} começa com {row['digit']}, dígito de "
            f"{percent(row['observed'])} dos {number(row['n'])} valores de {buyer}, contra "
            f"{percent(row['expected'])} pela lei de Benford "
            f"(MAD de Nigrini {number(row['mad'], 4)}, acima de {number(params['mad_threshold'], 3)})"
        )
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(row["score"], 4),
            message=message,
            evidence={
                "buyer_cnpj": row["buyer_cnpj"],
                "buyer_name": row["buyer_name"],
                "value": cents(row["value"]),
                "first_digit": row["digit"],
                "digit_share": round(row["observed"], 4),
                "benford_share": round(row["expected"], 4),
                "buyer_values": row["n"],
                "nigrini_mad": round(row["mad"], 5),
                "threshold": dict(params),
                "peer_group": "valores de contratação do órgão",
                "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
