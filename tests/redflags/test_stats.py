from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from cidadao.redflags.stats import (
    benford_mad,
    benford_proportions,
    cents_sum,
    excess_score,
    first_digit,
    hhi,
    modified_z,
    tukey_upper,
)


def test_group_statistics_match_the_textbook_formulas() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(9, 1, 40), rng.lognormal(5, 0.5, 25)
    frame = pl.DataFrame({"g": ["a"] * 40 + ["b"] * 25, "x": np.concatenate([a, b])})
    result = frame.with_columns(
        modified_z(pl.col("x")).over("g").alias("z"), tukey_upper(pl.col("x")).over("g").alias("fence")
    )
    for name, values in (("a", a), ("b", b)):
        rows = result.filter(pl.col("g") == name)
        median = np.median(values)
        mad = np.median(np.abs(values - median))
        assert rows["z"].to_numpy() == pytest.approx(0.6745 * (values - median) / mad)
        q1, q3 = np.quantile(values, [0.25, 0.75])
        assert rows["fence"][0] == pytest.approx(q3 + 1.5 * (q3 - q1))


def test_modified_z_falls_back_to_mean_deviation_then_to_null() -> None:
    frame = pl.DataFrame({"x": [1.0] * 9 + [3.0]})
    z = frame.select(modified_z(pl.col("x"))).to_series().to_list()
    assert z[-1] == pytest.approx(2.0 / (1.253314 * 0.2))
    flat = pl.DataFrame({"x": [5.0] * 4}).select(modified_z(pl.col("x"))).to_series().to_list()
    assert flat == [None] * 4


def test_hhi_cents_sum_and_excess_score() -> None:
    shares = pl.DataFrame({"s": [0.5, 0.3, 0.2]})
    assert shares.select(hhi(pl.col("s"))).item() == pytest.approx(2500 + 900 + 400)
    money = pl.DataFrame({"v": [0.1] * 10 + [1e9]})
    assert money.select(cents_sum(pl.col("v"))).item() == 1_000_000_001.0
    scores = pl.DataFrame({"v": [2.0, 4.0, 1e9]}).select(excess_score(pl.col("v"), 2.0)).to_series()
    assert scores.to_list() == pytest.approx([0.5, 0.75, 1.0])


def test_benford_mad_of_exact_benford_shares_is_zero_and_of_uniform_digits_is_known() -> None:
    uniform = pl.DataFrame({"d": list(range(1, 10)) * 10}).select(benford_proportions(pl.col("d")))
    expected = sum(abs(1 / 9 - math.log10(1 + 1 / d)) for d in range(1, 10)) / 9
    assert uniform.select(benford_mad()).item() == pytest.approx(expected)
    exact = pl.DataFrame({f"benford_{d}": [math.log10(1 + 1 / d)] for d in range(1, 10)})
    assert exact.select(benford_mad()).item() == pytest.approx(0.0, abs=1e-12)
    assert pl.select(first_digit(pl.lit(0.99))).item() is None
