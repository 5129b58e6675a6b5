from __future__ import annotations

from datetime import date

import pytest
from tests.redflags.conftest import award, awards_dataset, contrato, dataset, flagged, run

OTHER = "60701190000104"


def test_supplier_with_half_of_the_value_in_three_awards_is_flagged(check_finding) -> None:
    main = [award(value_homologated=10_000.0) for _ in range(3)]
    others = [award(value_homologated=30_000.0, c_supplier_id=OTHER, c_supplier_name="OUTRA LTDA")]
    result = run("supplier_concentration", awards_dataset(main + others))

    assert flagged(result) == {c["control_number"] for _, c in main}
    finding = result.findings[0]
    check_finding(finding)
    evidence = finding.evidence
    assert evidence["share"] == 0.5
    assert evidence["supplier_value"] == 30_000.0
    assert evidence["buyer_total"] == 60_000.0
    assert evidence["buyer_hhi"] == 5_000.0  # 50² + 50²
    assert sorted(evidence["related_records"]) == sorted(c["control_number"] for _, c in main)
    assert evidence["link"].startswith("https://pncp.gov.br/app/contratos/")
    assert finding.message == (
        "O fornecedor FORNECEDOR TESTE LTDA recebeu 50,0 % do valor das contratações diretas de MUNICIPIO DE "
        "TESTE em 2025 (R$ 30.000,00 de R$ 60.000,00, em 3 contratos; HHI do órgão 5.000)"
    )


def test_one_cent_below_half_is_not_flagged() -> None:
    main = [award(value_homologated=10_000.0) for _ in range(3)]
    others = [award(value_homologated=30_000.02, c_supplier_id=OTHER)]
    assert flagged(run("supplier_concentration", awards_dataset(main + others))) == set()


def test_two_awards_are_not_enough() -> None:
    pairs = [award(value_homologated=50_000.0) for _ in range(2)]
    assert flagged(run("supplier_concentration", awards_dataset(pairs))) == set()


def test_years_are_separate_groups() -> None:
    pairs = [award(value_homologated=10_000.0) for _ in range(2)]
    pairs.append(award(value_homologated=10_000.0, c_signed_at=date(2026, 1, 2)))
    assert flagged(run("supplier_concentration", awards_dataset(pairs))) == set()


def test_competitive_tenders_do_not_count() -> None:
    pairs = [award(modalidade_id=6) for _ in range(4)]
    result = run("supplier_concentration", awards_dataset(pairs))
    assert flagged(result) == set()
    assert result.skipped == 0


@pytest.mark.parametrize("missing", ["supplier_id", "value_global", "buyer_cnpj"])
def test_missing_fields_are_skipped_and_counted(missing: str) -> None:
    pairs = [award() for _ in range(3)]
    pairs[0][1][missing] = None
    result = run("supplier_concentration", awards_dataset(pairs))
    assert result.skipped == 1
    assert flagged(result) == set()


def test_contrato_without_known_contratacao_is_skipped() -> None:
    result = run("supplier_concentration", dataset(contratos=[contrato() for _ in range(3)]))
    assert result.skipped == 3
    assert result.findings == []
