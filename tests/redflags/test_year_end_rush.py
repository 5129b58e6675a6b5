from __future__ import annotations

from datetime import datetime

import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run


def monthly(months: range, value: float = 10_000.0, **fields: object) -> list[dict[str, object]]:
    return [
        contratacao(value_homologated=value, published_at=datetime(2025, month, 10, 12), **fields)
        for month in months
    ]


def december(day: int, value: float, **fields: object) -> dict[str, object]:
    return contratacao(value_homologated=value, published_at=datetime(2025, 12, day, 15), **fields)


def test_late_december_awards_of_a_spiking_buyer_are_flagged(check_finding) -> None:
    early, first_day, last_day = december(16, 10_000.0), december(17, 10_000.0), december(31, 10_000.0)
    result = run("year_end_rush", dataset([*monthly(range(1, 12)), early, first_day, last_day]))

    assert flagged(result) == {first_day["control_number"], last_day["control_number"]}
    finding = next(f for f in result.findings if f.record == last_day["control_number"])
    check_finding(finding)
    evidence = finding.evidence
    assert evidence["december_value"] == 30_000.0
    assert evidence["months_covered"] == 12
    assert evidence["monthly_average"] == pytest.approx(140_000 / 12, abs=0.01)
    assert evidence["ratio"] == pytest.approx(30_000 / (140_000 / 12), abs=1e-4)
    assert finding.message == (
        "Contratação direta de R$ 10.000,00 publicada em 31/12/2025, nos últimos 15 dias do ano, por "
        "MUNICIPIO DE TESTE, cujo valor em contratações diretas em dezembro (R$ 30.000,00) é 2,6 vezes a "
        "média mensal de 2025 (R$ 11.666,67)"
    )


@pytest.mark.parametrize(("value", "expected"), [(22_000.0, True), (21_999.99, False)])
def test_exactly_twice_the_monthly_average_is_flagged(value: float, expected: bool) -> None:
    # 11 x 10.000 + X over 12 months: X / ((110.000 + X) / 12) == 2 exactly when X = 22.000.
    late = december(20, value)
    assert (
        late["control_number"] in flagged(run("year_end_rush", dataset([*monthly(range(1, 12)), late])))
    ) is (expected)


def test_average_is_over_covered_months_only() -> None:
    # Data from October only: 10.000 + 10.000 + 25.000 over 3 months gives 15.000; 25.000 is 1,67x.
    late = december(20, 25_000.0)
    assert flagged(run("year_end_rush", dataset([*monthly(range(10, 12)), late]))) == set()
    # The same December against a full year is a spike.
    assert flagged(run("year_end_rush", dataset([*monthly(range(1, 12)), late]))) == {late["control_number"]}


def test_too_few_months_are_not_evaluated() -> None:
    late = december(20, 100_000.0)
    assert flagged(run("year_end_rush", dataset([*monthly(range(11, 12)), late]))) == set()


def test_competitive_purchases_count_for_coverage_not_for_value() -> None:
    tenders = monthly(range(1, 12), value=1_000_000.0, modalidade_id=6)
    late = december(20, 10_000.0)
    assert flagged(run("year_end_rush", dataset([*tenders, late]))) == {late["control_number"]}


def test_buyer_new_to_the_data_in_december_is_not_evaluated() -> None:
    newcomer = december(20, 50_000.0, buyer_cnpj="60701190000104")
    # The newcomer's own earlier record (a tender in June) makes its coverage 7 months.
    tender = contratacao(buyer_cnpj="60701190000104", modalidade_id=6, published_at=datetime(2025, 6, 1))
    rows = [*monthly(range(1, 12)), newcomer]
    assert flagged(run("year_end_rush", dataset(rows))) == set()
    assert flagged(run("year_end_rush", dataset([*rows, tender]))) == {newcomer["control_number"]}


def test_other_buyers_and_years_do_not_mix() -> None:
    other = "60701190000104"
    late = december(20, 20_000.0, buyer_cnpj=other)
    previous = contratacao(value_homologated=50_000.0, published_at=datetime(2024, 12, 20, 10))
    rows = [
        *monthly(range(1, 12)),
        *monthly(range(1, 12), buyer_cnpj=other),
        late,
        previous,
        december(5, 10_000.0),
    ]
    assert flagged(run("year_end_rush", dataset(rows))) == set()


def test_missing_dates_or_values_are_skipped() -> None:
    rows = monthly(range(1, 12))
    rows[0]["published_at"] = None
    rows[1]["value_homologated"] = rows[1]["value_estimated"] = None
    assert run("year_end_rush", dataset(rows)).skipped == 2
