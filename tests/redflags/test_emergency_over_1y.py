from __future__ import annotations

from datetime import date

from tests.redflags.conftest import award, awards_dataset, flagged, run

EMERGENCY = {"amparo_code": 38, "amparo_name": "Lei 14.133/2021, Art. 75, VIII"}


def test_term_of_exactly_one_year_passes_one_day_more_does_not(check_finding) -> None:
    ok = award(**EMERGENCY, c_term_start=date(2025, 2, 1), c_term_end=date(2026, 2, 1))
    long = award(
        **EMERGENCY,
        c_term_start=date(2025, 2, 1),
        c_term_end=date(2026, 2, 2),
        c_supplier_id="60701190000104",
    )
    result = run("emergency_over_1y", awards_dataset([ok, long]))

    assert flagged(result) == {long[1]["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.message == (
        "Contrato emergencial com vigência de 01/02/2025 a 02/02/2026, acima do prazo máximo de 12 meses "
        "(Lei 14.133/2021, art. 75, VIII)"
    )
    assert finding.evidence["term_exceeded"] is True


def test_second_emergency_contract_with_the_same_supplier_is_flagged() -> None:
    first = award(
        **EMERGENCY,
        c_signed_at=date(2025, 1, 10),
        c_term_start=date(2025, 1, 10),
        c_term_end=date(2025, 7, 10),
    )
    second = award(
        **EMERGENCY,
        c_signed_at=date(2025, 7, 11),
        c_term_start=date(2025, 7, 11),
        c_term_end=date(2025, 12, 31),
    )
    other_buyer = award(
        **EMERGENCY, buyer_cnpj="60701190000104", c_signed_at=date(2025, 8, 1), c_term_start=date(2025, 8, 1),
        c_term_end=date(2025, 9, 1),
    )  # fmt: skip
    result = run("emergency_over_1y", awards_dataset([first, second, other_buyer]))

    assert flagged(result) == {second[1]["control_number"]}
    finding = result.findings[0]
    assert finding.evidence["earlier_emergency_contracts"] == [first[1]["control_number"]]
    assert "11.222.333/0001-81" in finding.message


def test_non_emergency_awards_are_ignored_and_undated_ones_skipped() -> None:
    dispensa = award(c_term_start=date(2025, 1, 1), c_term_end=date(2027, 1, 1))
    undated = award(**EMERGENCY, c_signed_at=None, c_term_start=None, c_term_end=None)
    result = run("emergency_over_1y", awards_dataset([dispensa, undated]))

    assert result.findings == []
    assert result.skipped == 1
