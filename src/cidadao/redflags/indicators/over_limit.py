"""1 over_limit: a dispensa by value at or above the art. 75 limit in force for its year."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import FINDING_COLUMNS, dispensas_by_value, legal_citation_expr
from cidadao.redflags.text import cents_expr, cents_int_expr, link_expr, money_expr

# What a finding reads of a flagged record (a contrato's limit columns come from its dispensa).
COLUMNS = (*FINDING_COLUMNS, "purchase_control_number")


def _value_source() -> pl.Expr:
    return (
        pl.when(pl.col("value_homologated") > 0)
        .then(pl.lit("valorTotalHomologado"))
        .otherwise(pl.lit("valorTotalEstimado"))
    )


@register
class OverLimit(Indicator):
    id = "over_limit"
    version = "1"
    title = "Dispensa acima do limite legal"
    description = (
        "Dispensa de licitação por valor (art. 75, I ou II) com valor igual ou superior ao limite vigente no "
        "ano; crítica a partir do dobro do limite. Contratos são verificados pelo valor global quando a "
        "contratação não foi sinalizada."
    )
    legal_basis = "Lei 14.133/2021, art. 75, I e II"
    reference = "Lei 14.133/2021, art. 75, I e II, §2º; art. 182 e decretos anuais de atualização dos valores"
    severity = Severity.HIGH
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {"critical_ratio": 2.0, "doubled_cnpjs": []}
    needs = ("modalidade_id", "amparo_name", "amparo_code", "value", "published_at", "year", "buyer_name")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        population = dispensas_by_value(data, params["doubled_cnpjs"], [*COLUMNS, "value_homologated"])
        usable = population.filter(pl.col("value").is_not_null() & pl.col("limit").is_not_null())
        purchases = usable.with_columns(_value_source().alias("value_source")).filter(
            pl.col("value") >= pl.col("limit")
        )
        contracts = self._contracts(data, usable, purchases)
        findings = [
            *self._findings(purchases, RecordKind.CONTRATACAO, params),
            *self._findings(contracts, RecordKind.CONTRATO, params),
        ]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={
                "population": population.height,
                "flagged_contratacoes": purchases.height,
                "flagged_contratos": contracts.height,
                "critical_ratio": params["critical_ratio"],
            },
        )

    @staticmethod
    def _contracts(data: Dataset, usable: pl.DataFrame, purchases: pl.DataFrame) -> pl.DataFrame:
        """Contratos above the limit of their dispensa, when the dispensa itself was not flagged.

        The flagged dispensas are left out after the join, from its few rows, rather than from all dispensas.
        """
        parents = usable.select(
            pl.col("control_number").alias("purchase_control_number"),
            "inciso",
            "limit_year",
            "doubled",
            "limit",
            "act",
            pl.col("value").alias("purchase_value"),
        )
        contratos = data.contratos.select(*(name for name in COLUMNS if name not in parents.columns[1:]))
        # A contrato under every parent's limit cannot be flagged: most of them, left out before the join.
        lowest = parents["limit"].min()
        if lowest is not None:
            contratos = contratos.filter(pl.col("value") >= lowest)
        return (
            contratos.join(parents, on="purchase_control_number", how="inner")
            .filter(pl.col("value").is_not_null() & (pl.col("value") >= pl.col("limit")))
            .filter(~pl.col("purchase_control_number").is_in(purchases["control_number"].implode()))
            .with_columns(pl.lit("valorGlobal").alias("value_source"))
        )

    def _findings(self, rows: pl.DataFrame, kind: RecordKind, params: Mapping[str, Any]) -> list[Finding]:
        """Money, messages, citations and links formatted column-wise; the loop only assembles findings, from
        column lists (a dict per row from the frame cost more than the rest of the loop)."""
        value, limit = pl.col("value"), pl.col("limit")
        contrato = kind is RecordKind.CONTRATO
        subject = "Contrato de dispensa com valor global de " if contrato else "Dispensa de "
        message = pl.concat_str(
            pl.lit(subject),
            money_expr(value),
            pl.when(cents_int_expr(value) == cents_int_expr(limit))
            .then(pl.lit(" igual ao"))
            .otherwise(pl.lit(" acima do")),
            pl.lit(" limite de "),
            money_expr(limit),
            pl.lit(" vigente em "),
            pl.col("limit_year"),
            pl.lit(" ("),
            pl.col("citation"),
            pl.lit(")"),
        )
        # Lazily: the money formatting's shared parts are computed once.
        query = (
            rows.lazy()
            .with_columns(legal_citation_expr().alias("citation"))
            .with_columns(
                cents_expr(value).alias("value_cents"),
                cents_expr(limit).alias("limit_cents"),
                link_expr(kind, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")).alias("link"),
                message.alias("message"),
            )
        )
        if contrato:
            query = query.with_columns(cents_expr(pl.col("purchase_value")).alias("purchase_value"))
        formatted = query.collect()
        critical_ratio = params["critical_ratio"]
        findings = []
        names = (
            "control_number", "value", "limit", "value_cents", "value_source", "limit_cents", "limit_year",
            "inciso", "doubled", "act", "buyer_cnpj", "unit_code", "link", "message", "citation",
        )  # fmt: skip
        purchases = (
            zip(
                formatted["purchase_control_number"].to_list(),
                formatted["purchase_value"].to_list(),
                strict=True,
            )
            if contrato
            else repeat((None, None))
        )
        for (
            record, value_, limit_, value_cents, value_source, limit_cents, limit_year, inciso, doubled, act,
            buyer_cnpj, unit_code, own_link, text, citation,
        ), (purchase, purchase_value) in zip(
            zip(*(formatted[name].to_list() for name in names), strict=True), purchases, strict=False
        ):  # fmt: skip
            ratio = value_ / limit_
            evidence: dict[str, Any] = {
                "value": value_cents,
                "value_source": value_source,
                "limit": limit_cents,
                "limit_year": limit_year,
                "inciso": inciso,
                "doubled": doubled,
                "act": act,
                "ratio": round(ratio, 4),
                "buyer_cnpj": buyer_cnpj,
                "unit_code": unit_code,
                "link": own_link,
            }
            if contrato:
                evidence["purchase"] = purchase
                evidence["purchase_value"] = purchase_value
            findings.append(
                Finding(
                    self.id,
                    self.version,
                    record,
                    Severity.CRITICAL if ratio >= critical_ratio else Severity.HIGH,
                    round(min(1.0, 0.6 + 0.4 * min(1.0, ratio - 1.0)), 3),
                    text,
                    evidence,
                    citation,
                )
            )
        return findings
