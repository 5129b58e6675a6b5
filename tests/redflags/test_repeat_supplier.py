from __future__ import annotations

from datetime import date

from tests.redflags.conftest import award, awards_dataset, contrato, dataset, flagged, run

from cidadao.domain.records import Severity


def _on(day: date, **fields: object) -> tuple[dict, dict]:
    return award(c_signed_at=day, **fields)


def test_three_awards_within_twelve_months_are_all_flagged(check_finding) -> None:
    pairs = [_on(date(2025, 1, 10)), _on(date(2025, 6, 1)), _on(date(2026, 1, 10))]
    result = run("repeat_supplier", awards_dataset(pairs))

    assert flagged(result) == {purchase["control_number"] for purchase, _ in pairs}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.severity is Severity.MEDIUM
    assert finding.message == (
        "Fornecedor 11.222.333/0001-81 recebeu 3 contratações diretas do mesmo órgão entre 10/01/2025 e "
        "10/01/2026, em até 12 meses, somando R$ 30.000,00."
    )
    assert [r["date"] for r in finding.evidence["records"]] == ["2025-01-10", "2025-06-01", "2026-01-10"]
    assert (
        finding.evidence["link"]
        == f"https://pncp.gov.br/app/editais/00394460000141/2025/{pairs[0][0]['sequence']}"
    )


def test_spread_over_more_than_twelve_months_is_not_flagged() -> None:
    pairs = [_on(date(2025, 1, 10)), _on(date(2025, 6, 1)), _on(date(2026, 1, 11))]
    assert run("repeat_supplier", awards_dataset(pairs)).findings == []


def test_only_the_members_of_a_dense_window_are_flagged() -> None:
    early = _on(date(2023, 1, 1))
    dense = [_on(date(2025, 3, 1)), _on(date(2025, 4, 1)), _on(date(2025, 5, 1))]
    assert flagged(run("repeat_supplier", awards_dataset([early, *dense]))) == {
        p["control_number"] for p, _ in dense
    }


def test_several_contratos_of_one_purchase_count_once_and_buyers_are_separate() -> None:
    purchase, first = _on(date(2025, 1, 10))
    extra = contrato(purchase, signed_at=date(2025, 1, 20))
    second = _on(date(2025, 3, 1))
    other_buyer = _on(date(2025, 2, 10), buyer_cnpj="60701190000104")
    data = dataset([purchase, second[0], other_buyer[0]], [first, extra, second[1], other_buyer[1]])

    assert run("repeat_supplier", data).findings == []


def test_pregao_contracts_do_not_count_and_undated_are_skipped() -> None:
    pairs = [_on(date(2025, 1, 10), modalidade_id=6) for _ in range(3)]
    undated = _on(None, published_at=None)
    result = run("repeat_supplier", awards_dataset([*pairs, undated]))

    assert result.findings == []
    assert result.skipped == 1
