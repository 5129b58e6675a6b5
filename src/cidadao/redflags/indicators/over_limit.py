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
# What a flagged contrato inherits from its dispensa.
LIMIT_COLUMNS = ("inciso", "limit_year", "doubled", "limit", "act")


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
        cnpjs = params["doubled_cnpjs"]
        value, limit = pl.col("value"), pl.col("limit")
        # Which dispensas count and which are flagged, on the value and the limit columns (the latter are the
        # shared limits frame's, not copied); the rest of a dispensa's columns are copied when it is flagged.
        dispensas = dispensas_by_value(data, cnpjs, ["contratacao_row", "value", *LIMIT_COLUMNS])
        checked = dispensas.select(
            (value.is_not_null() & limit.is_not_null()).alias("usable"),
            (value >= limit).fill_null(False).alias("flagged"),
        )
        usable_count = int(checked["usable"].sum())
        purchases = dispensas_by_value(
            data, cnpjs, [*COLUMNS, "value_homologated"], subset=checked["flagged"]
        ).with_columns(_value_source().alias("value_source"))
        contracts = self._contracts(data, dispensas)
        findings = [
            *self._findings(purchases, RecordKind.CONTRATACAO, params),
            *self._findings(contracts, RecordKind.CONTRATO, params),
        ]
        return RuleResult(
            findings=findings,
            skipped=checked.height - usable_count,
            meta={
                "population": checked.height,
                "flagged_contratacoes": purchases.height,
                "flagged_contratos": contracts.height,
                "critical_ratio": params["critical_ratio"],
            },
        )

    @staticmethod
    def _contracts(data: Dataset, dispensas: pl.DataFrame) -> pl.DataFrame:
        """Contratos at or above the limit of their dispensa (a row of `dispensas`), when the dispensa itself
        is usable and was not flagged.

        A contrato's dispensa is its contratação row as the dataset links them once for every rule (the first
        row with its control number), found among the dispensas by position: no join on the control number.
        Only the few flagged contratos get their other columns copied.
        """
        parent = pl.col("parent")
        parent_value, parent_limit = (
            pl.lit(dispensas["value"]).gather(parent),
            pl.lit(dispensas["limit"]).gather(parent),
        )
        flagged = (
            data.contratos_enriched.lazy()
            .select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias("contrato"),
                "value",
                data.purchase_among(dispensas["contratacao_row"]).alias("parent"),
            )
            .filter(parent.is_not_null() & pl.col("value").is_not_null())
            .filter((parent_value < parent_limit) & (pl.col("value") >= parent_limit))
            .collect()
        )
        inherited = dispensas.select(LIMIT_COLUMNS)
        own = [name for name in COLUMNS if name not in inherited.columns]
        return (
            data.contratos.select(own)
            .gather(flagged["contrato"])
            .with_columns(
                inherited.with_columns(dispensas["value"].alias("purchase_value"))
                .gather(flagged["parent"])
                .get_columns()
            )
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
