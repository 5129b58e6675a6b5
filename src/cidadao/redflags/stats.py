"""Robust statistics shared by the statistical indicators, as polars expressions.

Every function returns an expression, so callers decide the peer group with `.over(...)` or `group_by().agg()`
and one pass computes the statistic for all groups at once.
"""

from __future__ import annotations

import math

import polars as pl

# Iglewicz & Hoaglin (1993): 0.6745 makes the MAD consistent with the standard deviation of a normal sample.
MAD_CONSISTENCY = 0.6745
# IBM SPSS convention when MAD is 0 (over half the values equal): scale the mean absolute deviation instead.
MEAN_AD_CONSISTENCY = 1.253314

# Evidence lists at most this many related records (the finding says how many there are in all).
RELATED_LIMIT = 50

BENFORD_DIGITS: tuple[int, ...] = tuple(range(1, 10))
BENFORD_EXPECTED: dict[int, float] = {d: math.log10(1 + 1 / d) for d in BENFORD_DIGITS}


def median_abs_deviation(x: pl.Expr) -> pl.Expr:
    return (x - x.median()).abs().median()


def modified_z(x: pl.Expr) -> pl.Expr:
    """Iglewicz-Hoaglin modified z-score 0.6745·(x − median)/MAD; null when the group has no spread at all."""
    deviation = x - x.median()
    mad = median_abs_deviation(x)
    mean_ad = deviation.abs().mean()
    return (
        pl.when(mad > 0)
        .then(MAD_CONSISTENCY * deviation / mad)
        .when(mean_ad > 0)
        .then(deviation / (MEAN_AD_CONSISTENCY * mean_ad))
        .otherwise(None)
    )


def quartile(x: pl.Expr, q: float) -> pl.Expr:
    """Quantile with linear interpolation (numpy/R type 7 default), so results can be checked elsewhere."""
    return x.quantile(q, interpolation="linear")


def tukey_upper(x: pl.Expr, k: float = 1.5) -> pl.Expr:
    """Upper Tukey fence Q3 + k·IQR."""
    q1, q3 = quartile(x, 0.25), quartile(x, 0.75)
    return q3 + k * (q3 - q1)


def hhi(share: pl.Expr) -> pl.Expr:
    """Herfindahl-Hirschman index on the 0-10,000 scale from market shares in 0..1."""
    return (share * 100).pow(2).sum()


def first_digit(x: pl.Expr) -> pl.Expr:
    """Leading significant digit of values >= 1 (null below): the first character of their decimal form."""
    return pl.when(x >= 1).then(x.cast(pl.String).str.slice(0, 1).cast(pl.Int8)).otherwise(None)


def benford_proportions(digit: pl.Expr) -> list[pl.Expr]:
    """Observed share of each first digit 1-9, as columns `benford_1`..`benford_9` (aggregations)."""
    return [(digit == d).mean().alias(f"benford_{d}") for d in BENFORD_DIGITS]


def benford_mad() -> pl.Expr:
    """Nigrini's mean absolute deviation from Benford's first-digit law, over `benford_1`..`benford_9`."""
    deviations = [(pl.col(f"benford_{d}") - BENFORD_EXPECTED[d]).abs() for d in BENFORD_DIGITS]
    return pl.sum_horizontal(deviations) / len(BENFORD_DIGITS)


def excess_score(value: pl.Expr, threshold: pl.Expr | float) -> pl.Expr:
    """Score in [0.5, 1) for a value at or above its threshold: 0.5 at it, toward 1 far above it."""
    return (1 - threshold / (2 * value)).clip(0.0, 1.0)


def cents_sum(money: pl.Expr) -> pl.Expr:
    """Sum of money in whole cents: exact, so group totals never depend on the order of the input rows."""
    return (money * 100).round().cast(pl.Int64).sum() / 100
