from __future__ import annotations

from datetime import date, datetime

import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run

from cidadao.domain.records import Severity
from cidadao.redflags.holidays import easter, national_holidays


def _window(start: datetime, end: datetime, **fields: object) -> dict:
    return contratacao(proposal_open_at=start, proposal_close_at=end, **fields)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (datetime(2025, 6, 2, 8), datetime(2025, 6, 5, 8), False),  # Mon -> Thu: Tue, Wed, Thu
        (datetime(2025, 6, 2, 8), datetime(2025, 6, 4, 18), True),  # Mon -> Wed: 2 days
        (datetime(2025, 6, 5, 8), datetime(2025, 6, 9, 8), True),  # Thu -> Mon: Fri, Mon
        (datetime(2025, 6, 5, 8), datetime(2025, 6, 10, 8), False),  # Thu -> Tue: Fri, Mon, Tue
        (datetime(2025, 6, 17, 8), datetime(2025, 6, 20, 8), True),  # Corpus Christi 19/06 inside
        (datetime(2025, 2, 28, 8), datetime(2025, 3, 5, 8), True),  # Carnaval 03-04/03: only Wed 05
        (datetime(2025, 12, 30, 8), datetime(2026, 1, 2, 8), True),  # year boundary, 01/01 holiday
    ],
)
def test_business_day_windows(start: datetime, end: datetime, expected: bool) -> None:
    assert bool(run("short_notice", dataset([_window(start, end)])).findings) is expected


def test_finding_names_the_days_and_the_holidays_inside(check_finding) -> None:
    purchase = _window(datetime(2025, 4, 16, 8), datetime(2025, 4, 22, 18))
    finding = run("short_notice", dataset([purchase])).findings[0]

    check_finding(finding)
    assert finding.severity is Severity.MEDIUM
    assert finding.message == (
        "Dispensa com prazo de propostas de 2 dias úteis (16/04/2025 a 22/04/2025), abaixo do mínimo de "
        "3 dias úteis (Lei 14.133/2021, art. 75, §3º)"
    )
    assert finding.evidence["holidays_in_window"] == ["2025-04-18", "2025-04-21"]
    assert finding.evidence["calendar_days"] == 6


def test_consciencia_negra_counts_from_2024_only() -> None:
    assert date(2023, 11, 20) not in national_holidays(2023)
    assert date(2024, 11, 20) in national_holidays(2024)
    # Tue 18/11/2025 -> Fri 21/11/2025: Wed, (Thu 20 holiday), Fri = 2 business days.
    assert run("short_notice", dataset([_window(datetime(2025, 11, 18), datetime(2025, 11, 21))])).findings


def test_easter_dates() -> None:
    assert [easter(year) for year in (2021, 2024, 2025, 2026)] == [
        date(2021, 4, 4),
        date(2024, 3, 31),
        date(2025, 4, 20),
        date(2026, 4, 5),
    ]


def test_missing_or_empty_windows_are_skipped_and_other_incisos_ignored() -> None:
    missing = contratacao(proposal_open_at=None, proposal_close_at=None)
    same_instant = _window(datetime(2025, 6, 2, 8), datetime(2025, 6, 2, 8))
    emergency = _window(
        datetime(2025, 6, 2, 8), datetime(2025, 6, 3, 8), amparo_name="Lei 14.133/2021, Art. 75, VIII"
    )
    result = run("short_notice", dataset([missing, same_instant, emergency]))

    assert result.findings == []
    assert result.skipped == 2


def test_minimum_is_configurable() -> None:
    purchase = _window(datetime(2025, 6, 2, 8), datetime(2025, 6, 5, 8))
    assert flagged(run("short_notice", dataset([purchase]), min_business_days=5)) == {
        purchase["control_number"]
    }
