"""5 sanctioned_supplier: contrato signed with a supplier under a CEIS/CNEP sanction in force that day."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.text import cents, day, document, link

LEGAL_BASIS = "Lei 14.133/2021, art. 14, III; art. 156, III e IV"
SANCTION_COLUMNS = ["sanction_list", "sanctioned_name", "category", "authority", "start_date", "end_date"]


@register
class SanctionedSupplier(Indicator):
    id = "sanctioned_supplier"
    version = "1"
    title = "Contrato com fornecedor sancionado"
    description = (
        "Contrato cujo fornecedor tinha, na data de assinatura, sanção vigente no CEIS (Cadastro de Empresas "
        "Inidôneas e Suspensas) ou no CNEP (Cadastro Nacional de Empresas Punidas)."
    )
    legal_basis = LEGAL_BASIS
    reference = "Lei 14.133/2021, arts. 14, III, 156 e 161; Lei 12.846/2013, art. 22 (CNEP); CEIS/CNEP da CGU"
    severity = Severity.CRITICAL
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {"lists": ["CEIS", "CNEP"]}
    needs = ("supplier_id", "signed_at")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        contratos = data.contratos_enriched
        usable = contratos.filter(pl.col("supplier_id").is_not_null() & pl.col("signed_at").is_not_null())
        sanctions = data.sanctions.filter(
            pl.col("sanction_list").str.to_uppercase().is_in([name.upper() for name in params["lists"]])
            & pl.col("start_date").is_not_null()
        ).rename({"sanctioned_id": "supplier_id"})
        signed = pl.col("signed_at")
        in_force = (pl.col("start_date") <= signed) & (
            pl.col("end_date").is_null() | (pl.col("end_date") >= signed)
        )
        hits = (
            usable.join(sanctions, on="supplier_id", how="inner")
            .filter(in_force)
            .sort("control_number", "start_date", "sanction_list")
            .group_by("control_number", maintain_order=True)
            .agg(
                pl.exclude(SANCTION_COLUMNS).first(),
                pl.struct(SANCTION_COLUMNS).alias("sanctions"),
            )
        )
        findings = [self._finding(row) for row in hits.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=contratos.height - usable.height,
            meta={
                "population": usable.height,
                "sanctions_considered": sanctions.height,
                "lists": list(params["lists"]),
                "flagged": hits.height,
            },
        )

    def _finding(self, row: dict[str, Any]) -> Finding:
        sanctions: list[dict[str, Any]] = row["sanctions"]
        first = sanctions[0]
        until = f"até {day(first['end_date'])}" if first["end_date"] else "sem data final"
        supplier = document(row["supplier_id"])
        category = first["category"] or "categoria não informada"
        more = f" e outras {len(sanctions) - 1}" if len(sanctions) > 1 else ""
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=Severity.CRITICAL,
            score=1.0,
            message=(
                f"Contrato assinado em {day(row['signed_at'])} com o fornecedor {supplier}, que tinha sanção "
                f"no {first['sanction_list']} ({category}, de {day(first['start_date'])} {until}){more} "
                f"({LEGAL_BASIS})"
            ),
            evidence={
                "supplier_id": row["supplier_id"],
                "supplier_name": row["supplier_name"],
                "signed_at": row["signed_at"].isoformat(),
                "sanctions": [
                    {
                        "list": sanction["sanction_list"],
                        "category": sanction["category"],
                        "authority": sanction["authority"],
                        "sanctioned_name": sanction["sanctioned_name"],
                        "start_date": sanction["start_date"].isoformat(),
                        "end_date": None
                        if sanction["end_date"] is None
                        else sanction["end_date"].isoformat(),
                    }
                    for sanction in sanctions
                ],
                "value_global": None if row["value_global"] is None else cents(row["value_global"]),
                "buyer_cnpj": row["buyer_cnpj"],
                "purchase": row["purchase_control_number"],
                "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=LEGAL_BASIS,
        )
