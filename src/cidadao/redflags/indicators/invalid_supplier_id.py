"""11 invalid_supplier_id: a contrato whose supplier CNPJ/CPF fails its check digits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.ids import classify_id, cnpj_check_digits, cpf_check_digits, normalise_id
from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.text import document, link

# Length of the id each PNCP tipoPessoa must have; PE (foreign supplier) has no Brazilian id to check.
ID_LENGTH = {"PJ": 14, "PF": 11}
ID_NAME = {14: "CNPJ", 11: "CPF"}
SCORE = {"check_digits": 0.9, "malformed": 0.6}


def id_problem(ni: str, supplier_type: str | None) -> tuple[str, str | None] | None:
    """(problem, expected check digits) for a wrong id, None when it is valid or not checkable.

    Problems: "check_digits" (a CNPJ/CPF of the right size whose digits fail, repeated digits included) and
    "malformed" (a PJ/PF supplier whose id has the wrong size even after restoring dropped leading zeros).
    """
    if supplier_type == "PE":
        return None
    kind, valid = classify_id(ni)
    normalised = normalise_id(ni)
    if kind in ("cnpj", "cpf"):
        if valid:
            return None
        expected = cnpj_check_digits(normalised[:12]) if kind == "cnpj" else cpf_check_digits(normalised[:9])
        return "check_digits", expected if expected != normalised[-2:] else None
    size = ID_LENGTH.get(supplier_type or "")
    if kind != "other" or size is None:
        return None
    # Ids published as numbers lose their leading zeros: that is a formatting slip, not a wrong id.
    padded = normalised.zfill(size)
    if len(padded) == size and classify_id(padded)[1]:
        return None
    return "malformed", None


@register
class InvalidSupplierId(Indicator):
    id = "invalid_supplier_id"
    version = "1"
    title = "CNPJ/CPF do fornecedor inválido"
    description = (
        "Contrato cujo fornecedor tem CNPJ ou CPF com dígitos verificadores errados (inclusive sequências de "
        "dígitos repetidos) ou com tamanho incompatível com o tipo de pessoa; CNPJ alfanumérico aceito."
    )
    legal_basis = "Lei 14.133/2021, art. 68, I e II (habilitação fiscal: inscrição no CPF ou no CNPJ)"
    reference = (
        "Receita Federal: cálculo dos dígitos verificadores do CNPJ (IN RFB 2.119/2022 e 2.229/2024, "
        "alfanumérico) e do CPF (IN RFB 2.172/2024)"
    )
    severity = Severity.MEDIUM
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs = ("supplier_id", "supplier_type", "supplier_id_valid")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        contratos = data.contratos.with_columns(pl.col("supplier_id").str.strip_chars())
        usable = contratos.filter(pl.col("supplier_id").is_not_null() & (pl.col("supplier_id") != ""))
        # Ids the loader already found valid (supplier_id_valid, same rules) need no second look; the rest
        # are checked once per distinct (id, type), since suppliers repeat a lot across contracts.
        unchecked = usable.filter(pl.col("supplier_id_valid").is_null() | ~pl.col("supplier_id_valid"))
        distinct = unchecked.select("supplier_id", "supplier_type").unique()
        problems = [id_problem(ni, kind) for ni, kind in distinct.iter_rows()]
        checked = distinct.with_columns(
            pl.Series("problem", [p[0] if p else None for p in problems], dtype=pl.String),
            pl.Series("expected_digits", [p[1] if p else None for p in problems], dtype=pl.String),
        ).drop_nulls("problem")
        flagged = unchecked.join(checked, on=["supplier_id", "supplier_type"], nulls_equal=True)
        findings = [self._finding(row) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=contratos.height - usable.height,
            meta={"checked_ids": distinct.height, "invalid_ids": checked.height},
        )

    def _finding(self, row: dict[str, Any]) -> Finding:
        ni, supplier = row["supplier_id"], row["supplier_name"] or "sem nome"
        size = len(normalise_id(ni))
        shown = document(normalise_id(ni)) if size in ID_NAME else ni
        if row["problem"] == "check_digits":
            name = ID_NAME[size]
            expected = row["expected_digits"]
            # A CPF is shown masked (its check digits hidden), so the computed ones would mean nothing.
            if expected and name == "CNPJ":
                detail = f"dígitos verificadores inválidos (o cálculo dá {expected})"
            else:
                detail = "dígitos verificadores inválidos" if expected else "dígitos repetidos"
            message = f"O {name} {shown} do fornecedor {supplier} tem {detail}"
        else:
            name = ID_NAME[ID_LENGTH[row["supplier_type"]]]
            message = f"O {name} {shown} do fornecedor {supplier} tem {size} caracteres, tamanho inválido"
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=SCORE[row["problem"]],
            message=message,
            evidence={
                "supplier_id": ni,
                "supplier_name": row["supplier_name"],
                "supplier_type": row["supplier_type"],
                "id_kind": name,
                "problem": row["problem"],
                "expected_check_digits": row["expected_digits"],
                "link": link(RecordKind.CONTRATO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
