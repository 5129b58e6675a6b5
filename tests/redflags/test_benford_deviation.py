from __future__ import annotations

import math

import polars as pl
import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run

from cidadao.redflags.stats import first_digit

# 300 first digits in Benford proportions (rounded).
BENFORD_COUNTS = {1: 91, 2: 53, 3: 37, 4: 29, 5: 24, 6: 20, 7: 17, 8: 15, 9: 14}


def values_with(counts: dict[int, int]) -> list[float]:
    # Amounts of different magnitudes and cents: only the first digit matters.
    return [
        round(digit * 10 ** (2 + i % 4) * (1 + 0.01 * (i % 7)), 2)
        for digit, count in counts.items()
        for i in range(count)
    ]


def buyer_rows(values: list[float], cnpj: str = "00394460000141") -> list[dict[str, object]]:
    return [contratacao(value_homologated=v, buyer_cnpj=cnpj, buyer_name="ORGAO B") for v in values]


def mad(counts: dict[int, int]) -> float:
    n = sum(counts.values())
    return sum(abs(counts.get(d, 0) / n - math.log10(1 + 1 / d)) for d in range(1, 10)) / 9


def test_first_digit_of_amounts() -> None:
    values = [10.0, 12.5, 99.99, 1e9, 987654321.55, 0.5, 9.999999]
    assert pl.select(first_digit(pl.Series(values))).to_series().to_list() == [1, 1, 9, 1, 9, None, 9]


def test_values_following_benford_are_not_flagged() -> None:
    assert mad(BENFORD_COUNTS) < 0.005
    result = run("benford_deviation", dataset(buyer_rows(values_with(BENFORD_COUNTS))))
    assert result.findings == []
    assert result.meta == {"buyers_evaluated": 1, "buyers_deviating": 0}


def test_deviating_buyer_is_flagged_on_its_over_represented_digit(check_finding) -> None:
    counts = {**BENFORD_COUNTS, 1: 31, 9: 74}
    rows = buyer_rows(values_with(counts))
    result = run("benford_deviation", dataset(rows))

    nines = {r["control_number"] for r in rows if str(r["value_homologated"]).startswith("9")}
    assert flagged(result) == nines
    assert len(nines) == 74
    finding = result.findings[0]
    check_finding(finding)
    assert finding.evidence["nigrini_mad"] == pytest.approx(mad(counts), abs=1e-5)
    assert finding.evidence["digit_share"] == pytest.approx(74 / 300, abs=1e-4)
    assert finding.message.endswith(
        f"começa com 9, dígito de 24,7 % dos 300 valores de ORGAO B, contra 4,6 % pela lei de Benford "
        f"(MAD de Nigrini {mad(counts):.4f}, acima de 0,015)".replace(".", ",")
    )


def test_fewer_than_300_values_are_not_evaluated() -> None:
    counts = {**BENFORD_COUNTS, 1: 30, 9: 74}  # 299 values
    result = run("benford_deviation", dataset(buyer_rows(values_with(counts))))
    assert result.findings == []
    assert result.meta["buyers_evaluated"] == 0


def test_small_amounts_do_not_count_and_missing_values_are_skipped() -> None:
    rows = buyer_rows(values_with({**BENFORD_COUNTS, 1: 31, 9: 74})[:-1])  # 299 values of 10 or more
    rows.append(contratacao(value_homologated=9.99, value_estimated=9.99))
    rows.append(contratacao(value_homologated=None, value_estimated=None))
    result = run("benford_deviation", dataset(rows))
    assert result.findings == []
    assert result.skipped == 1


def test_buyers_are_judged_separately() -> None:
    deviating = buyer_rows(values_with({**BENFORD_COUNTS, 1: 31, 9: 74}), cnpj="60701190000104")
    conforming = buyer_rows(values_with(BENFORD_COUNTS))
    result = run("benford_deviation", dataset([*deviating, *conforming]))
    assert {f.evidence["buyer_cnpj"] for f in result.findings} == {"60701190000104"}
