"""15 heterogeneous_supplier: a direct-award supplier in unusually many object classes (OCP Cardinal R048)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.objects import OTHER
from cidadao.redflags.stats import RELATED_LIMIT, excess_score, tukey_upper
from cidadao.redflags.text import document, link, number


@register
class HeterogeneousSupplier(Indicator):
    id = "heterogeneous_supplier"
    version = "1"
    title = "Fornecedor de objetos muito heterogêneos"
    description = (
        "Fornecedor com contratos por dispensa ou inexigibilidade em um número incomum de classes de objeto "
        "distintas: acima da cerca de Tukey (Q3 + 1,5·IQR) entre os fornecedores e em ao menos 3 classes "
        "(a classe 'outros' não conta); é sinalizado o contrato direto mais recente do fornecedor."
    )
    legal_basis = None
    reference = "OCP Cardinal, regra R048 (Heterogeneous supplier), Open Contracting Partnership"
    severity = Severity.LOW
    scope = "global"
    defaults: ClassVar[Mapping[str, Any]] = {"tukey_k": 1.5, "min_suppliers": 20, "min_classes": 3}
    needs = ("modalidade_id", "supplier_id", "object_class")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        # Only the columns findings read: filtering the wide frame would copy all of them.
        population = data.contratos_enriched.select(
            "control_number",
            "modalidade_id",
            "supplier_id",
            "supplier_name",
            "object_class",
            "signed_at",
            "buyer_cnpj",
            "year",
            "sequence",
        ).filter(pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES) | pl.col("modalidade_id").is_null())
        usable = population.drop_nulls(["modalidade_id", "supplier_id", "object_class"])
        classes = pl.col("object_class").filter(pl.col("object_class") != OTHER)
        suppliers = (
            usable.group_by("supplier_id")
            .agg(classes.n_unique().alias("classes"), classes.unique().sort().alias("class_names"))
            .with_columns(
                pl.lit(usable["supplier_id"].n_unique()).alias("suppliers"),
                tukey_upper(pl.col("classes"), params["tukey_k"]).alias("fence"),
            )
        )
        heterogeneous = suppliers.filter(
            (pl.col("suppliers") >= params["min_suppliers"])
            & (pl.col("classes") > pl.col("fence"))
            & (pl.col("classes") >= params["min_classes"])
        )
        members = usable.join(heterogeneous.select("supplier_id"), on="supplier_id", how="semi")
        per_class = (
            members.group_by("supplier_id", "object_class")
            .agg(pl.len().alias("n"))
            .sort("supplier_id", "object_class")
            .group_by("supplier_id")
            .agg(pl.struct("object_class", "n").alias("class_counts"))
        )
        related = members.group_by("supplier_id").agg(
            pl.len().alias("awards"), pl.col("control_number").sort().head(RELATED_LIMIT).alias("related")
        )
        # The trait belongs to the supplier: one finding, on its most recent direct award (a new award to
        # the same supplier gets its own finding as it arrives), with the others listed as related.
        latest = members.sort(["signed_at", "control_number"], descending=True, nulls_last=True).unique(
            "supplier_id", keep="first", maintain_order=True
        )
        flagged = (
            latest.join(heterogeneous, on="supplier_id")
            .join(per_class, on="supplier_id")
            .join(related, on="supplier_id")
            .with_columns(
                excess_score(
                    pl.col("classes").cast(pl.Float64),
                    pl.max_horizontal("fence", pl.lit(float(params["min_classes"]))),
                ).alias("score")
            )
        )
        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={
                "suppliers": suppliers.height,
                "fence": suppliers["fence"][0] if suppliers.height else None,
                "suppliers_flagged": heterogeneous.height,
            },
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        supplier = row["supplier_name"] or document(row["supplier_id"])
        message = (
            f"O fornecedor {supplier} tem {row['awards']} contratos diretos em {row['classes']} classes de "
            f"objeto distintas ({', '.join(row['class_names'])}), acima da cerca de Tukey de "
            f"{number(row['fence'], 1)} calculada entre {number(row['suppliers'])} fornecedores"
        )
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(row["score"], 4),
            message=message,
            evidence={
                "supplier_id": row["supplier_id"],
                "supplier_name": row["supplier_name"],
                "object_class": row["object_class"],
                "classes": row["classes"],
                "class_counts": {item["object_class"]: item["n"] for item in row["class_counts"]},
                "tukey_fence": round(row["fence"], 4),
                "peer_group": {"suppliers": row["suppliers"]},
                "threshold": dict(params),
                "related_records": row["related"],
                "related_total": row["awards"],
                "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
