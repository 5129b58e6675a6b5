"""Liveness: heartbeat rows, the dead man's switch, and the worker's stuck-consumer watchdog.

- `heartbeats` rows: `worker@<host>` (written by the worker's own probe task), `beat` (written by the active
  beat), `beat-standby@<host>` (a beat waiting for the lock). Readiness and operators read them.
- The `heartbeat` job alerts through the outbox (kind `system`) when a job has not succeeded for two of its
  intervals.
- The watchdog: a thread in the worker's main process sends a probe task to the worker's own queue every
  WORKER_PROBE_INTERVAL_SECONDS. If none is consumed for WORKER_PROBE_TIMEOUT_SECONDS while the database is
  reachable, the worker has silently stopped consuming (a known Celery failure after a Redis reset): it
  shuts itself down so its supervisor (`cidadao up`, systemd, the PaaS) starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from cidadao.alerts.channels import build_channels
from cidadao.alerts.outbox import insert_rows, outbox_row
from cidadao.alerts.payload import envelope
from cidadao.config import Settings, get_settings
from cidadao.monitor.jobs import stale_jobs, utcnow
from cidadao.store.db import engine_for, transaction
from cidadao.store.models import HeartbeatRow

log = logging.getLogger(__name__)

PROBE_TASK = "cidadao.probe"


def worker_component(hostname: str | None = None) -> str:
    return f"worker@{hostname or socket.gethostname()}"


def beat(engine: Engine, component: str, detail: Mapping[str, Any] | None = None) -> None:
    """Upsert the heartbeat row of `component`, merging `detail` into what is there."""
    with transaction(engine) as session:
        current = session.scalar(select(HeartbeatRow.detail).where(HeartbeatRow.component == component))
        values = {
            "component": component,
            "seen_at": utcnow(),
            "detail": {**(current or {}), **(detail or {})},
        }
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(HeartbeatRow).values(values)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[HeartbeatRow.component],
                set_={"seen_at": statement.excluded.seen_at, "detail": statement.excluded.detail},
            )
        )


def heartbeats(engine: Engine) -> dict[str, tuple[datetime, dict[str, Any]]]:
    with transaction(engine) as session:
        rows = session.execute(select(HeartbeatRow.component, HeartbeatRow.seen_at, HeartbeatRow.detail))
        return {row.component: (row.seen_at, row.detail or {}) for row in rows}


def heartbeat_job(engine: Engine, settings: Settings, start: datetime, _end: datetime) -> dict[str, Any]:
    """Record liveness and raise a system alert for every job overdue by two intervals."""
    beat(engine, worker_component(), {"heartbeat_window": start.isoformat()})
    beat(engine, "beat", {"last_scheduled_window": start.isoformat()})  # beat sent this task
    stale = stale_jobs(engine, settings)
    alerts = 0
    if stale:
        names = ", ".join(item.job for item in stale)
        log.error("jobs overdue: %s", names)
        lines = [
            f"{item.job}: sem execução bem-sucedida desde "
            + (item.last_success.strftime("%d/%m/%Y %H:%M UTC") if item.last_success else "o início")
            for item in stale
        ]
        payload = envelope(
            "system.stale_jobs",
            {
                "max_severity": "critical",
                "jobs": [item.job for item in stale],
                "message": "Tarefas periódicas atrasadas (mais de dois intervalos sem sucesso): "
                + "; ".join(lines),
            },
        )
        # One alert per heartbeat window and channel: a repeat run of the window adds nothing.
        rows = [
            outbox_row(
                f"system-stale-{start:%Y%m%dT%H%M%S}-{channel.slug}",
                channel.slug,
                "system",
                payload,
                utcnow(),
            )
            for channel in build_channels(settings)
        ]
        if rows:
            with transaction(engine) as session:
                alerts = insert_rows(session, rows)
    return {"stale": [item.job for item in stale], "alerts": alerts}


def probe(hostname: str, token: str) -> None:
    """Body of the probe task: proves this worker still consumes its queue."""
    engine = engine_for(get_settings().effective_database_url)
    beat(engine, worker_component(hostname), {"probe": token})


class Watchdog(threading.Thread):
    """Restarts a worker whose consumer no longer receives messages (see module docstring)."""

    def __init__(self, app: Any, hostname: str, settings: Settings) -> None:
        super().__init__(name="cidadao-watchdog", daemon=True)
        self.app = app
        self.hostname = hostname
        self.settings = settings
        self.stopped = threading.Event()

    def run(self) -> None:
        from celery.utils import worker_direct

        engine = engine_for(self.settings.effective_database_url)
        interval = self.settings.worker_probe_interval_seconds
        timeout = self.settings.worker_probe_timeout_seconds
        queue = worker_direct(self.hostname)
        component = worker_component(self.hostname)
        sent: set[str] = set()
        last_ok = time.monotonic()
        while not self.stopped.wait(interval):
            token = uuid.uuid4().hex
            try:
                self.app.send_task(PROBE_TASK, args=[self.hostname, token], queue=queue, expires=timeout)
                sent.add(token)
            except Exception:
                log.warning("probe not sent (broker unreachable?)", exc_info=True)
            try:
                answered = heartbeats(engine).get(component, (None, {}))[1].get("probe")
            except Exception:
                # Database down: probes cannot be answered; not the consumer's fault, so start over.
                last_ok = time.monotonic()
                continue
            if answered in sent:
                last_ok = time.monotonic()
                sent = {token}
            if time.monotonic() - last_ok > timeout:
                log.error("worker stopped consuming for %ss: shutting down to be restarted", timeout)
                self.stopped.set()
                os.kill(os.getpid(), signal.SIGTERM)
                # A warm shutdown that hangs on a dead connection must not keep a useless worker alive.
                time.sleep(max(30, self.settings.task_time_limit_seconds // 10))
                os._exit(3)


def start_watchdog(consumer: Any) -> Watchdog | None:
    """Called on `worker_ready` with the worker's consumer."""
    hostname = getattr(consumer, "hostname", None)
    if not hostname:
        return None
    watchdog = Watchdog(consumer.app, hostname, get_settings())
    watchdog.start()
    return watchdog
