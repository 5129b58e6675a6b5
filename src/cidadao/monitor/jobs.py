"""Periodic jobs: their schedule, queue, and exactly-one run per (job, time window).

A window is the interval-aligned slice of UTC time the job is running for. Running a window takes:
1. the job's named lock (dies with the holder, see worker/singleton.py), so one run of a job at a time;
2. the `job_runs` row of (job, window_start): absent -> start; succeeded -> nothing to do; left `running` by a
   dead holder or `failed` -> start again, counting the attempt; more than JOB_MAX_ATTEMPTS starts -> parked.
So two beats firing, Celery redelivering after a crash, and a task that keeps killing its worker all end in at
most one successful run per window, and a poison window stops being retried.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Delete, Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cidadao.config import Settings
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow, IngestionRunRow, JobRunRow, QuarantineRow, WatermarkRow
from cidadao.worker.singleton import try_lock

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Queue(StrEnum):
    CRITICAL = "critical"  # alert delivery
    HIGH = "high"  # monitoring
    DEFAULT = "default"  # maintenance


PRIORITY = {Queue.CRITICAL: 10, Queue.HIGH: 7, Queue.DEFAULT: 5}


@dataclass(frozen=True)
class Job:
    name: str
    task: str  # Celery task name
    queue: Queue
    interval_setting: str  # Settings attribute holding the interval in seconds

    def interval(self, settings: Settings) -> int:
        return int(getattr(settings, self.interval_setting))


JOBS: Mapping[str, Job] = {
    job.name: job
    for job in (
        Job("monitor_contratacoes", "cidadao.monitor_contratacoes", Queue.HIGH, "monitor_interval_seconds"),
        Job("poll_new_contratacoes", "cidadao.poll_new_contratacoes", Queue.HIGH, "poll_interval_seconds"),
        Job("sync_contratos", "cidadao.sync_contratos", Queue.HIGH, "contracts_interval_seconds"),
        Job("global_analysis", "cidadao.global_analysis", Queue.HIGH, "global_analysis_interval_seconds"),
        Job("dispatch_alerts", "cidadao.dispatch_alerts", Queue.CRITICAL, "dispatch_interval_seconds"),
        Job("critical_summary", "cidadao.critical_summary", Queue.CRITICAL, "digest_interval_seconds"),
        Job("retention_cleanup", "cidadao.retention_cleanup", Queue.DEFAULT, "cleanup_interval_seconds"),
        Job("heartbeat", "cidadao.heartbeat", Queue.DEFAULT, "heartbeat_interval_seconds"),
        Job("refresh_sanctions", "cidadao.refresh_sanctions", Queue.DEFAULT, "sanctions_interval_seconds"),
    )
}
# Not periodic: the API enqueues it with an investigation id.
INVESTIGATE_TASK = "cidadao.investigate"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    ALREADY_DONE = "already_done"  # another run (a second beat, a redelivery) finished this window
    BUSY = "busy"  # another run of this job holds its lock right now
    PARKED = "parked"  # too many starts for this window: left for a human


@dataclass(frozen=True)
class JobResult:
    job: str
    window_start: datetime
    outcome: Outcome
    attempt: int = 0
    detail: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "window_start": self.window_start.isoformat(),
            "outcome": self.outcome.value,
            "attempt": self.attempt,
            "detail": dict(self.detail or {}),
        }


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive; every one we store is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window_start(now: datetime, interval_seconds: int) -> datetime:
    """Start of the interval-aligned window containing `now` (aligned on the Unix epoch, UTC)."""
    elapsed = int((as_utc(now) - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % interval_seconds)


def _claim(engine: Engine, job: str, start: datetime, max_attempts: int) -> tuple[Outcome | None, int]:
    """Start (job, start) or say why not. Caller holds the job's lock, so a `running` row is an orphan."""
    with transaction(engine) as session:
        # Rows left running by a holder that died (we hold the lock now): mark them for the record.
        session.execute(
            update(JobRunRow)
            .where(JobRunRow.job == job, JobRunRow.status == "running", JobRunRow.window_start != start)
            .values(status="abandoned", finished_at=func.now())
        )
        row = session.scalars(
            select(JobRunRow).where(JobRunRow.job == job, JobRunRow.window_start == start)
        ).one_or_none()
        if row is None:
            try:
                with session.begin_nested():
                    session.add(JobRunRow(job=job, window_start=start, status="running", attempts=1))
            except IntegrityError:  # a process without the lock (none should exist) won the insert
                return Outcome.BUSY, 0
            return None, 1
        if row.status == "succeeded":
            return Outcome.ALREADY_DONE, row.attempts
        if row.status == "parked" or row.attempts >= max_attempts:
            row.status = "parked"
            row.finished_at = utcnow()
            return Outcome.PARKED, row.attempts
        row.attempts += 1
        row.status = "running"
        row.started_at = utcnow()
        row.finished_at = None
        return None, row.attempts


def _finish(engine: Engine, job: str, start: datetime, status: str, detail: Mapping[str, Any]) -> None:
    with transaction(engine) as session:
        session.execute(
            update(JobRunRow)
            .where(JobRunRow.job == job, JobRunRow.window_start == start)
            .values(status=status, detail=dict(detail), finished_at=func.now())
        )


def run_window(
    engine: Engine,
    settings: Settings,
    job: Job,
    body: Callable[[datetime, datetime], Mapping[str, Any]],
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    exclusive: bool = True,
) -> JobResult:
    """Run `body(window_start, window_end)` for the window of `now` (or `start`) unless already done.

    `exclusive=False` skips the job lock, for one-off jobs (an investigation) that only a redelivery of
    their own message can run twice, long after the first holder died.
    """
    interval = job.interval(settings)
    start = as_utc(start) if start is not None else window_start(now or utcnow(), interval)
    end = start + timedelta(seconds=interval)
    with try_lock(engine, f"job.{job.name}") if exclusive else nullcontext(True) as held:
        if not held:
            log.info("job busy, skipping window", extra={"job": job.name, "window": start.isoformat()})
            return JobResult(job.name, start, Outcome.BUSY)
        refused, attempt = _claim(engine, job.name, start, settings.job_max_attempts)
        if refused is not None:
            if refused is Outcome.PARKED:
                log.error("job window parked after %s attempts", attempt, extra={"job": job.name})
            return JobResult(job.name, start, refused, attempt)
        try:
            detail = body(start, end)
        except BaseException as error:
            # Best effort: if the database itself is down the row stays `running` and counts as an attempt.
            try:
                _finish(engine, job.name, start, "failed", {"error": repr(error)[:500]})
            except Exception:
                log.warning("could not record the failure of %s", job.name, exc_info=True)
            raise
        _finish(engine, job.name, start, "succeeded", detail)
        return JobResult(job.name, start, Outcome.SUCCEEDED, attempt, detail)


@dataclass(frozen=True)
class StaleJob:
    job: str
    last_success: datetime | None
    overdue_seconds: float


def stale_jobs(engine: Engine, settings: Settings, now: datetime | None = None) -> list[StaleJob]:
    """Dead man's switch: jobs with no success for two of their intervals (since the system first ran)."""
    now = as_utc(now or utcnow())
    with transaction(engine) as session:
        first_run = session.scalar(select(func.min(JobRunRow.started_at)))
        last = dict(
            session.execute(
                select(JobRunRow.job, func.max(JobRunRow.finished_at))
                .where(JobRunRow.status == "succeeded")
                .group_by(JobRunRow.job)
            ).all()
        )
    if first_run is None:
        return []
    stale: list[StaleJob] = []
    for job in JOBS.values():
        allowed = timedelta(seconds=2 * job.interval(settings))
        success = last.get(job.name)
        reference = as_utc(success) if success is not None else as_utc(first_run)
        if now - reference > allowed:
            overdue = (now - reference - allowed).total_seconds()
            stale.append(StaleJob(job.name, as_utc(success) if success else None, overdue))
    return stale


def _deleted(session: Session, statement: Delete) -> int:
    return int(session.connection().execute(statement).rowcount)


def retention_cleanup(engine: Engine, settings: Settings, start: datetime, _end: datetime) -> dict[str, Any]:
    """Delete old quarantine rows, runs, delivered alerts and past days' fast-path counts (`pncp-tail:`).
    Findings are never deleted (triage history)."""
    day = timedelta(days=1)
    runs_before = start - settings.retention_runs_days * day
    statements = {
        "quarantine": delete(QuarantineRow).where(
            QuarantineRow.created_at < start - settings.retention_quarantine_days * day
        ),
        "job_runs": delete(JobRunRow).where(
            JobRunRow.status != "running", JobRunRow.started_at < runs_before
        ),
        "ingestion_runs": delete(IngestionRunRow).where(
            IngestionRunRow.status != "running", IngestionRunRow.started_at < runs_before
        ),
        "tail_watermarks": delete(WatermarkRow).where(
            WatermarkRow.source.startswith("pncp-tail:"), WatermarkRow.updated_at < start - 2 * day
        ),
        "outbox": delete(AlertOutboxRow).where(
            AlertOutboxRow.status == "delivered",
            AlertOutboxRow.delivered_at < start - settings.retention_outbox_days * day,
        ),
    }
    with transaction(engine) as session:
        return {name: _deleted(session, statement) for name, statement in statements.items()}


def refresh_sanctions(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    """Refresh CEIS/CNEP from the Portal da Transparência; without TRANSPARENCIA_API_KEY a logged no-op."""
    if settings.transparencia_api_key is None or not settings.transparencia_api_key.get_secret_value():
        log.info("sanctions refresh skipped: TRANSPARENCIA_API_KEY is not set")
        return {"skipped": "no TRANSPARENCIA_API_KEY"}
    # The sources package owns the Portal da Transparência client.
    refresh: Callable[[Engine, Settings], Mapping[str, Any]] = importlib.import_module(
        "cidadao.sources.sanctions"
    ).refresh
    return dict(refresh(engine, settings))
