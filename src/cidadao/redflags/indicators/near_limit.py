"""2 near_limit: a dispensa by value just below the art. 75 limit (bunching under the threshold)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import FINDING_COLUMNS, dispensas_by_value, legal_citation
from cidadao.redflags.text import cents, link, money, percent


@register
class NearLimit(Indicator):
    id = "near_limit"
    version = "1"
    title = "Dispensa logo abaixo do limite legal"
    description = (
        "Dispensa de licitação por valor (art. 75, I ou II) com valor entre 90 % e 100 % do limite vigente "
        "no ano: valores concentrados logo abaixo do limite podem indicar ajuste para evitar a licitação."
    )
    legal_basis = "Lei 14.133/2021, art. 75, I e II"
    reference = (
        "Lei 14.133/2021, art. 75, I e II; concentração logo abaixo de limiares como indicador de "
        "manipulação (OCP Red Flags for Integrity, 2016; Palguta e Pertold, AEJ: Economic Policy, 2017)"
    )
    severity = Severity.LOW
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {"band_low": 0.9, "doubled_cnpjs": []}
    needs = ("modalidade_id", "amparo_name", "amparo_code", "value", "published_at", "year", "buyer_name")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        band_low = float(params["band_low"])
        if not 0.0 < band_low < 1.0:
            raise ValueError(f"near_limit.band_low must be between 0 and 1, got {band_low}")
        population = dispensas_by_value(data, params["doubled_cnpjs"], FINDING_COLUMNS)
        usable = population.filter(pl.col("value").is_not_null() & pl.col("limit").is_not_null())
        ratio = pl.col("value") / pl.col("limit")
        near = usable.with_columns(ratio.alias("ratio")).filter(
            (pl.col("ratio") >= band_low) & (pl.col("value") < pl.col("limit"))
        )
        findings = []
        for row in near.iter_rows(named=True):
            citation = legal_citation(row["inciso"], row["act"], row["doubled"])
            position = (row["ratio"] - band_low) / (1.0 - band_low)
            gap = row["limit"] - row["value"]
            findings.append(
                Finding(
                    rule=self.id,
                    rule_version=self.version,
                    record=row["control_number"],
                    severity=Severity.LOW,
                    score=round(min(1.0, 0.2 + 0.3 * position), 3),
                    message=(
                        f"Dispensa de {money(row['value'])} fica {money(gap)} abaixo do limite de "
                        f"{money(row['limit'])} vigente em {row['limit_year']} "
                        f"({percent(math.floor(row['ratio'] * 1000) / 1000)} do limite; {citation})"
                    ),
                    evidence={
                        "value": cents(row["value"]),
                        "limit": cents(row["limit"]),
                        "limit_year": row["limit_year"],
                        "inciso": row["inciso"],
                        "doubled": row["doubled"],
                        "act": row["act"],
                        "ratio": round(row["ratio"], 4),
                        "band": [band_low, 1.0],
                        "buyer_cnpj": row["buyer_cnpj"],
                        "unit_code": row["unit_code"],
                        "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
                    },
                    legal_basis=citation,
                )
            )
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={"population": usable.height, "band_low": band_low, "flagged": near.height},
        )
