from __future__ import annotations

import pytest
from tests.redflags.conftest import contrato, dataset, flagged, run


def single(supplier_id: str | None, supplier_type: str | None = "PJ") -> set[str]:
    row = contrato(supplier_id=supplier_id, supplier_type=supplier_type)
    return flagged(run("invalid_supplier_id", dataset(contratos=[row])))


@pytest.mark.parametrize(
    ("supplier_id", "supplier_type"),
    [
        ("11222333000181", "PJ"),
        ("11.222.333/0001-81", "PJ"),  # punctuation is ignored
        ("12ABC34501DE35", "PJ"),  # alphanumeric CNPJ (from July 2026)
        ("12abc34501de35", "PJ"),
        ("52998224725", "PF"),
        ("529.982.247-25", "PF"),
        ("394460000141", "PJ"),  # leading zeros lost by a number-typed export: 00394460000141 is valid
        ("123456", "PE"),  # foreign supplier: nothing to check
        ("11222333000180", "PE"),
    ],
)
def test_valid_or_uncheckable_ids_are_not_flagged(supplier_id: str, supplier_type: str) -> None:
    assert single(supplier_id, supplier_type) == set()


def test_wrong_cnpj_check_digit_is_flagged_with_the_expected_digits(check_finding) -> None:
    row = contrato(supplier_id="11222333000180", supplier_name="ACME LTDA")
    result = run("invalid_supplier_id", dataset(contratos=[row]))
    assert flagged(result) == {row["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.message == (
        "O CNPJ 11.222.333/0001-80 do fornecedor ACME LTDA tem dígitos verificadores inválidos "
        "(o cálculo dá 81)"
    )
    assert finding.evidence["expected_check_digits"] == "81"
    assert finding.evidence["problem"] == "check_digits"
    assert finding.legal_basis is not None


@pytest.mark.parametrize(
    ("supplier_id", "supplier_type", "problem"),
    [
        ("52998224726", "PF", "check_digits"),
        ("12ABC34501DE36", "PJ", "check_digits"),
        ("11111111111", "PF", "check_digits"),  # passes the sum, but repeated digits are void
        ("00000000000000", "PJ", "check_digits"),
        ("1122233300018", "PJ", "malformed"),
        ("112223330001811", "PJ", "malformed"),
        ("5299822472", "PF", "malformed"),
    ],
)
def test_invalid_ids_are_flagged(supplier_id: str, supplier_type: str, problem: str) -> None:
    row = contrato(supplier_id=supplier_id, supplier_type=supplier_type)
    result = run("invalid_supplier_id", dataset(contratos=[row]))
    assert [f.evidence["problem"] for f in result.findings] == [problem]


def test_cpf_is_masked_in_the_message_and_kept_whole_in_the_evidence() -> None:
    row = contrato(supplier_id="52998224726", supplier_type="PF", supplier_name="JOSE DA SILVA")
    finding = run("invalid_supplier_id", dataset(contratos=[row])).findings[0]
    assert (
        finding.message
        == "O CPF ***.982.247-** do fornecedor JOSE DA SILVA tem dígitos verificadores inválidos"
    )
    assert finding.evidence["supplier_id"] == "52998224726"
    assert finding.evidence["expected_check_digits"] == "25"


def test_repeated_digits_say_so() -> None:
    result = run(
        "invalid_supplier_id", dataset(contratos=[contrato(supplier_id="11111111111", supplier_type="PF")])
    )
    assert result.findings[0].message.endswith("tem dígitos repetidos")


def test_every_contrato_of_an_invalid_supplier_is_flagged_once() -> None:
    rows = [contrato(supplier_id="11222333000180") for _ in range(3)] + [contrato()]
    result = run("invalid_supplier_id", dataset(contratos=rows))
    assert sorted(f.record for f in result.findings) == sorted(r["control_number"] for r in rows[:3])
    assert result.meta == {"checked_ids": 2, "invalid_ids": 1}


def test_ids_the_loader_found_valid_are_not_checked_again() -> None:
    rows = [contrato(supplier_id="11222333000180", supplier_id_valid=False), contrato(supplier_id_valid=True)]
    result = run("invalid_supplier_id", dataset(contratos=rows))
    assert flagged(result) == {rows[0]["control_number"]}
    assert result.meta == {"checked_ids": 1, "invalid_ids": 1}


@pytest.mark.parametrize("supplier_id", [None, "", "   "])
def test_missing_supplier_id_is_skipped(supplier_id: str | None) -> None:
    result = run("invalid_supplier_id", dataset(contratos=[contrato(supplier_id=supplier_id)]))
    assert result.findings == []
    assert result.skipped == 1
