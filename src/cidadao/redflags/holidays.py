"""Brazilian national holidays and business days, for deadlines counted in "dias úteis".

Fixed: 1/1, 21/4 (Tiradentes), 1/5, 7/9, 12/10, 2/11, 15/11, 20/11 (Dia Nacional de Zumbi e da Consciência
Negra, Lei 14.759/2023, from 2024), 25/12. Movable, from Easter Sunday: Carnaval Monday and Tuesday (-48, -47
days), Sexta-feira Santa (-2) and Corpus Christi (+60). Carnaval and Corpus Christi are federal "pontos
facultativos" but public offices close on them nearly everywhere, so they are not counted as business days.
State and municipal holidays are not included (a window may look one day longer than it was locally).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

import polars as pl

FIXED = ((1, 1), (4, 21), (5, 1), (9, 7), (10, 12), (11, 2), (11, 15), (12, 25))
CONSCIENCIA_NEGRA_SINCE = 2024


def easter(year: int) -> date:
    """Easter Sunday (Gregorian calendar; anonymous algorithm of Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


@cache
def national_holidays(year: int) -> frozenset[date]:
    sunday = easter(year)
    days = {date(year, month, day) for month, day in FIXED}
    days.update(sunday + timedelta(days=offset) for offset in (-48, -47, -2, 60))
    if year >= CONSCIENCIA_NEGRA_SINCE:
        days.add(date(year, 11, 20))
    return frozenset(days)


def holidays_between(first_year: int, last_year: int) -> list[date]:
    """Sorted national holidays of the years first_year..last_year."""
    return sorted(day for year in range(first_year, last_year + 1) for day in national_holidays(year))


def business_days_after(start: pl.Expr, end: pl.Expr, holidays: list[date]) -> pl.Expr:
    """Business days in (start, end] of Date expressions (art. 183: first day excluded, last included)."""
    one_day = pl.duration(days=1)
    return pl.business_day_count(start + one_day, end + one_day, holidays=holidays)
