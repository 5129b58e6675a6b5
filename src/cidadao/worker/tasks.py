"""Celery tasks: thin, synchronous wrappers around the monitor's jobs (no task body is `async def`).

Each periodic task runs its job for one window through `run_window` (exactly one success per window, bounded
attempts). A database or broker outage raises a transient error: the task retries the SAME window a few
times with short backoff, and the next window's run catches up on anything still missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError, OperationalError

from cidadao.alerts.digest import send_critical_anomalies_summary
from cidadao.alerts.dispatcher import dispatch_due
from cidadao.config import Settings, get_settings
from cidadao.monitor import pipeline
from cidadao.monitor.analysis import analyse_global
from cidadao.monitor.jobs import (
    INVESTIGATE_TASK,
    JOBS,
    Job,
    Outcome,
    Queue,
    refresh_sanctions,
    retention_cleanup,
    run_window,
    utcnow,
    window_start,
)
from cidadao.store.db import engine_for, transaction
from cidadao.store.models import InvestigationRow
from cidadao.worker.app import celery_app
from cidadao.worker.heartbeat import PROBE_TASK, heartbeat_job, probe

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, DBAPIError, RedisConnectionError, ConnectionError, TimeoutError)
MAX_RETRIES = 5

Body = Callable[[Engine, Settings, datetime, datetime], Mapping[str, Any]]


def _transient(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and not isinstance(error, OperationalError):
        return bool(error.connection_invalidated)
    return isinstance(error, TRANSIENT) or isinstance(error.__cause__, TRANSIENT)


def _periodic(job: Job, body: Body) -> Any:
    def run(self: Any, window: str | None = None) -> dict[str, Any]:
        settings = get_settings()
        engine = engine_for(settings.effective_database_url)
        start = datetime.fromisoformat(window) if window else window_start(utcnow(), job.interval(settings))
        try:
            result = run_window(engine, settings, job, lambda s, e: body(engine, settings, s, e), start=start)
        except Exception as error:
            if not _transient(error) or self.request.retries >= MAX_RETRIES:
                raise
            log.warning("%s: transient failure, retrying window %s: %s", job.name, start, error)
            countdown = min(60, 5 * 2**self.request.retries)
            raise self.retry(exc=error, kwargs={"window": start.isoformat()}, countdown=countdown) from None
        log.info("%s window %s: %s", job.name, start.isoformat(), result.outcome.value)
        return result.as_dict()

    run.__name__ = job.name
    run.__qualname__ = job.name
    return celery_app.task(name=job.task, bind=True, max_retries=MAX_RETRIES)(run)


def _monitor(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    return pipeline.run_pass(engine, settings, endpoints=("contratacoes",)).as_dict()


def _poll(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    # Today's new contratações and contratos only; the full passes above stay the guarantee.
    return pipeline.run_tail(engine, settings).as_dict()


def _contracts(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    return pipeline.run_pass(engine, settings, endpoints=("contratos",)).as_dict()


def _global(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    return analyse_global(engine, settings).as_dict()


def _dispatch(engine: Engine, settings: Settings, _start: datetime, _end: datetime) -> dict[str, Any]:
    return dispatch_due(engine, settings, limit=500).as_dict()


def _summary(engine: Engine, settings: Settings, start: datetime, _end: datetime) -> dict[str, Any]:
    # The 24 hours that ended when this window began.
    summary = send_critical_anomalies_summary(engine, settings, period_hours=24, now=start)
    return {"total": summary.get("total", 0), "enqueued": summary.get("enqueued", 0)}


monitor_contratacoes = _periodic(JOBS["monitor_contratacoes"], _monitor)
poll_new_contratacoes = _periodic(JOBS["poll_new_contratacoes"], _poll)
sync_contratos = _periodic(JOBS["sync_contratos"], _contracts)
global_analysis = _periodic(JOBS["global_analysis"], _global)
dispatch_alerts = _periodic(JOBS["dispatch_alerts"], _dispatch)
critical_summary = _periodic(JOBS["critical_summary"], _summary)
retention = _periodic(JOBS["retention_cleanup"], retention_cleanup)
heartbeat = _periodic(JOBS["heartbeat"], heartbeat_job)
sanctions = _periodic(JOBS["refresh_sanctions"], refresh_sanctions)

probe_task = celery_app.task(name=PROBE_TASK, ignore_result=True, acks_late=False)(probe)


def _set_investigation(engine: Engine, investigation_id: int, **values: Any) -> None:
    with transaction(engine) as session:
        session.execute(
            update(InvestigationRow).where(InvestigationRow.id == investigation_id).values(**values)
        )


def _run_investigation(self: Any, investigation_id: int) -> dict[str, Any]:
    """Analyse the investigation's buyer / supplier / window now and store the result on its row."""
    settings = get_settings()
    engine = engine_for(settings.effective_database_url)
    with transaction(engine) as session:
        row = session.get(InvestigationRow, investigation_id)
        if row is None:
            log.warning("investigation %s not found", investigation_id)
            return {"outcome": "missing"}
        kind, target = row.target_kind, dict(row.target)
    # Its own job and window in job_runs: redeliveries of a poisonous investigation are bounded too.
    job = Job(
        f"investigate-{investigation_id}", INVESTIGATE_TASK, Queue.CRITICAL, "dispatch_interval_seconds"
    )

    def body(_start: datetime, _end: datetime) -> dict[str, Any]:
        _set_investigation(engine, investigation_id, status="running")
        try:
            result = pipeline.investigate(engine, settings, kind, target)
        except Exception as error:
            if _transient(error):
                raise
            _set_investigation(
                engine,
                investigation_id,
                status="failed",
                error=f"{type(error).__name__}: {error}"[:2000],
                finished_at=utcnow(),
            )
            raise
        _set_investigation(
            engine, investigation_id, status="succeeded", result=result, error=None, finished_at=utcnow()
        )
        return result

    try:
        outcome = run_window(
            engine, settings, job, body, start=datetime(1970, 1, 1, tzinfo=UTC), exclusive=False
        )
    except Exception as error:
        if not _transient(error) or self.request.retries >= MAX_RETRIES:
            raise
        raise self.retry(exc=error, countdown=min(60, 5 * 2**self.request.retries)) from None
    if outcome.outcome is Outcome.PARKED:
        _set_investigation(
            engine,
            investigation_id,
            status="failed",
            error="parked after repeated crashes",
            finished_at=utcnow(),
        )
    return outcome.as_dict()


run_investigation = celery_app.task(name=INVESTIGATE_TASK, bind=True, max_retries=MAX_RETRIES)(
    _run_investigation
)
