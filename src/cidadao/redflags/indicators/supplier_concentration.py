"""9 supplier_concentration: one supplier takes half or more of a buyer's direct-award value in a year."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.stats import RELATED_LIMIT, cents_sum, hhi
from cidadao.redflags.text import cents, document, link, money, number, percent

GROUP = ["buyer_cnpj", "award_year"]


@register
class SupplierConcentration(Indicator):
    id = "supplier_concentration"
    version = "1"
    title = "Concentração de fornecedor nas contratações diretas"
    description = (
        "Em um ano, um único fornecedor recebe 50 % ou mais do valor dos contratos por dispensa ou "
        "inexigibilidade de um órgão, em pelo menos 3 contratos; a evidência traz o índice HHI do órgão."
    )
    legal_basis = None
    reference = (
        "Open Contracting Partnership, Red Flags for Integrity (2016): participação de mercado elevada de um "
        "fornecedor; HHI conforme U.S. DOJ/FTC Horizontal Merger Guidelines (2010, §5.3)"
    )
    severity = Severity.MEDIUM
    scope = "buyer"
    defaults: ClassVar[Mapping[str, Any]] = {"min_share": 0.5, "min_awards": 3}
    needs = ("modalidade_id", "buyer_cnpj", "supplier_id", "value", "signed_at", "year")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        contratos = data.contratos_enriched.with_columns(
            pl.coalesce(pl.col("signed_at").dt.year().cast(pl.Int64), pl.col("year")).alias("award_year")
        )
        population = contratos.filter(
            pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES) | pl.col("modalidade_id").is_null()
        )
        usable = population.drop_nulls(["modalidade_id", "buyer_cnpj", "supplier_id", "value", "award_year"])
        skipped = population.height - usable.height

        suppliers = (
            usable.group_by([*GROUP, "supplier_id"])
            .agg(cents_sum(pl.col("value")).alias("supplier_value"), pl.len().alias("awards"))
            .with_columns(
                pl.col("supplier_value").sum().over(GROUP).alias("buyer_total"),
                pl.len().over(GROUP).alias("suppliers"),
            )
            .with_columns(
                pl.when(pl.col("buyer_total") > 0)
                .then(pl.col("supplier_value") / pl.col("buyer_total"))
                .alias("share")
            )
            .with_columns(hhi(pl.col("share")).over(GROUP).alias("hhi"))
        )
        groups = suppliers.filter(
            (pl.col("share") >= params["min_share"]) & (pl.col("awards") >= params["min_awards"])
        )
        keys = [*GROUP, "supplier_id"]
        members = usable.join(groups.select(keys), on=keys, how="semi")
        related = members.group_by(keys).agg(
            pl.col("control_number").sort().head(RELATED_LIMIT).alias("related_records")
        )
        flagged = members.join(groups, on=keys).join(related, on=keys)

        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=skipped,
            meta={"buyer_years": suppliers.select(GROUP).n_unique(), "flagged_groups": groups.height},
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        share = row["share"]
        supplier = row["supplier_name"] or document(row["supplier_id"])
        buyer = row["buyer_name"] or row["buyer_cnpj"]
        message = (
            f"O fornecedor {supplier} recebeu {percent(share)} do valor das contratações diretas de {buyer} "
            f"em {row['award_year']} ({money(row['supplier_value'])} de {money(row['buyer_total'])}, "
            f"em {row['awards']} contratos; HHI do órgão {number(row['hhi'])})"
        )
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(min(1.0, share), 4),
            message=message,
            evidence={
                "buyer_cnpj": row["buyer_cnpj"],
                "buyer_name": row["buyer_name"],
                "year": row["award_year"],
                "supplier_id": row["supplier_id"],
                "supplier_name": row["supplier_name"],
                "value": cents(row["value"]),
                "supplier_value": cents(row["supplier_value"]),
                "buyer_total": cents(row["buyer_total"]),
                "share": round(share, 4),
                "awards": row["awards"],
                "threshold": {"min_share": params["min_share"], "min_awards": params["min_awards"]},
                "peer_group": "contratos por dispensa ou inexigibilidade do órgão no ano",
                "buyer_suppliers": row["suppliers"],
                "buyer_hhi": round(row["hhi"], 1),
                "related_records": row["related_records"],
                "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
