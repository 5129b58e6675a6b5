from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cidadao.config import load_settings
from cidadao.monitor.jobs import (
    JOBS,
    Outcome,
    refresh_sanctions,
    retention_cleanup,
    run_window,
    stale_jobs,
    window_start,
)
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow, JobRunRow, QuarantineRow, WatermarkRow
from cidadao.worker.singleton import NamedLock

NOW = datetime(2026, 3, 4, 10, 7, 31, tzinfo=UTC)
MONITOR = JOBS["monitor_contratacoes"]


def test_windows_are_aligned_on_the_interval() -> None:
    assert window_start(NOW, 300) == datetime(2026, 3, 4, 10, 5, tzinfo=UTC)
    assert window_start(NOW, 86400) == datetime(2026, 3, 4, tzinfo=UTC)
    assert window_start(NOW.replace(tzinfo=None), 30) == datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)


def test_a_window_succeeds_once_however_often_it_is_sent(engine: Engine) -> None:
    settings = load_settings()
    calls: list[tuple[datetime, datetime]] = []

    def body(start: datetime, end: datetime) -> dict[str, Any]:
        calls.append((start, end))
        return {"n": len(calls)}

    first = run_window(engine, settings, MONITOR, body, now=NOW)
    second = run_window(engine, settings, MONITOR, body, now=NOW + timedelta(seconds=100))
    following = run_window(engine, settings, MONITOR, body, now=NOW + timedelta(seconds=300))

    assert [first.outcome, second.outcome, following.outcome] == [
        Outcome.SUCCEEDED,
        Outcome.ALREADY_DONE,
        Outcome.SUCCEEDED,
    ]
    start = datetime(2026, 3, 4, 10, 5, tzinfo=UTC)
    assert calls[0] == (start, start + timedelta(seconds=300))
    assert len(calls) == 2
    with engine.connect() as connection:
        rows = connection.execute(select(JobRunRow.status, JobRunRow.attempts, JobRunRow.detail)).all()
    assert [tuple(row) for row in rows] == [("succeeded", 1, {"n": 1}), ("succeeded", 1, {"n": 2})]


def test_a_window_that_keeps_failing_is_parked_after_max_attempts(engine: Engine) -> None:
    settings = load_settings(job_max_attempts=3)
    calls = 0

    def body(_start: datetime, _end: datetime) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise RuntimeError("poison record")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            run_window(engine, settings, MONITOR, body, now=NOW)
    parked = run_window(engine, settings, MONITOR, body, now=NOW)

    assert parked.outcome is Outcome.PARKED
    assert calls == 3
    with engine.connect() as connection:
        row = connection.execute(select(JobRunRow.status, JobRunRow.attempts, JobRunRow.detail)).one()
    assert row.status == "parked"
    assert row.attempts == 3


def test_a_run_left_running_by_a_dead_holder_counts_as_an_attempt(engine: Engine) -> None:
    settings = load_settings()
    start = window_start(NOW, MONITOR.interval(settings))
    with transaction(engine) as session:
        session.add(JobRunRow(job=MONITOR.name, window_start=start, status="running", attempts=1))
        session.add(JobRunRow(job=MONITOR.name, window_start=start - timedelta(hours=1), status="running"))

    result = run_window(engine, settings, MONITOR, lambda s, e: {}, now=NOW)

    assert (result.outcome, result.attempt) == (Outcome.SUCCEEDED, 2)
    with engine.connect() as connection:
        statuses = connection.scalars(select(JobRunRow.status).order_by(JobRunRow.window_start)).all()
    assert statuses == ["abandoned", "succeeded"]


def test_a_job_whose_lock_is_held_elsewhere_is_busy(engine: Engine) -> None:
    settings = load_settings()
    other = NamedLock(engine, f"job.{MONITOR.name}")
    assert other.acquire()
    try:
        result = run_window(engine, settings, MONITOR, lambda s, e: pytest.fail("must not run"), now=NOW)
    finally:
        other.release()
    assert result.outcome is Outcome.BUSY
    assert run_window(engine, settings, MONITOR, lambda s, e: {}, now=NOW).outcome is Outcome.SUCCEEDED


def test_dead_mans_switch_names_jobs_without_success_for_two_intervals(engine: Engine) -> None:
    settings = load_settings()
    now = datetime.now(UTC)  # finished_at is the database's clock
    assert stale_jobs(engine, settings, now) == []
    for job in JOBS.values():
        run_window(engine, settings, job, lambda s, e: {}, now=now)

    assert stale_jobs(engine, settings, now + timedelta(seconds=30)) == []
    late = now + timedelta(seconds=2 * settings.monitor_interval_seconds + 60)
    stale = {item.job for item in stale_jobs(engine, settings, late)}

    assert "monitor_contratacoes" in stale
    assert "dispatch_alerts" in stale
    assert "critical_summary" not in stale  # daily: not overdue after 11 minutes


def test_retention_deletes_only_old_rows_of_what_settings_say(engine: Engine) -> None:
    settings = load_settings(retention_quarantine_days=10, retention_outbox_days=5, retention_runs_days=10)
    old, recent = NOW - timedelta(days=20), NOW - timedelta(days=1)
    with transaction(engine) as session:
        for when in (old, recent):
            session.add(QuarantineRow(source="file", reason="x", payload="{}", created_at=when))
            session.add(
                AlertOutboxRow(
                    idempotency_key=f"delivered-{when:%j}", channel="file", payload={}, status="delivered",
                    delivered_at=when, created_at=when,
                )
            )  # fmt: skip
        session.add(AlertOutboxRow(idempotency_key="pending-old", channel="file", payload={}, created_at=old))
        for source, when in (
            ("pncp-tail:contratos:-:20000101", old),
            ("pncp-tail:contratos:-:20000119", recent),
        ):
            session.add(WatermarkRow(source=source, position=when, updated_at=when))
        session.add(WatermarkRow(source="pncp:contratos", position=old, updated_at=old))

    deleted = retention_cleanup(engine, settings, NOW, NOW)

    assert deleted["quarantine"] == 1
    assert deleted["outbox"] == 1
    with engine.connect() as connection:
        keys = set(connection.scalars(select(AlertOutboxRow.idempotency_key)).all())
    assert keys == {f"delivered-{recent:%j}", "pending-old"}
    assert deleted["tail_watermarks"] == 1
    with engine.connect() as connection:
        marks = set(connection.scalars(select(WatermarkRow.source)).all())
    assert marks == {"pncp-tail:contratos:-:20000119", "pncp:contratos"}


def test_sanctions_refresh_without_an_api_key_is_a_logged_no_op(engine: Engine) -> None:
    result = refresh_sanctions(engine, load_settings(transparencia_api_key=None), NOW, NOW)
    assert result == {"skipped": "no TRANSPARENCIA_API_KEY"}
