"""Beat: the schedule of every periodic job, aligned on window boundaries, run by one beat at a time.

`SingletonScheduler` takes the `beat` named lock before scheduling anything; a second beat blocks there as
hot standby and takes over as soon as the first one dies (the lock dies with its holder). Each job's entry
fires at the start of each interval-aligned window, the same window the task claims in `job_runs`, so even
two beats sending at once give one run per window.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.beat import Scheduler
from celery.schedules import schedule

from cidadao.config import Settings, get_settings
from cidadao.logs import configure_logging
from cidadao.monitor.jobs import JOBS, PRIORITY, window_start
from cidadao.store.db import engine_for
from cidadao.worker.heartbeat import beat as write_heartbeat
from cidadao.worker.singleton import NamedLock

log = logging.getLogger(__name__)

BEAT_LOCK = "beat"


class AlignedSchedule(schedule):  # type: ignore[misc]
    """Due once per window aligned on the Unix epoch (not `interval` after whenever beat started)."""

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        now = self.now()
        interval = int(self.run_every.total_seconds())
        next_start = window_start(now, interval) + timedelta(seconds=interval)
        last: datetime = self.maybe_make_aware(last_run_at)
        if window_start(last, interval) < window_start(now, interval):
            return timedelta(0)
        return next_start - now

    def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
        remaining = self.remaining_estimate(last_run_at)
        if remaining <= timedelta(0):
            interval = int(self.run_every.total_seconds())
            return True, interval - (self.now() - window_start(self.now(), interval)).total_seconds()
        return False, remaining.total_seconds()

    def now(self) -> datetime:
        return datetime.now(UTC)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        job.name: {
            "task": job.task,
            "schedule": AlignedSchedule(timedelta(seconds=job.interval(settings))),
            "options": {
                "queue": job.queue.value,
                "priority": PRIORITY[job.queue],
                # A message older than its window is useless: the next window's message replaces it.
                "expires": job.interval(settings),
            },
        }
        for job in JOBS.values()
    }


class SingletonScheduler(Scheduler):  # type: ignore[misc]
    """In-memory scheduler that only schedules while it holds the `beat` lock."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self.settings = get_settings()
        # Celery builds the scheduler (for its banner) before it sets up logging; a standby waits right
        # here, and should say so.
        configure_logging(self.settings.log_level, self.settings.log_format)
        self.engine = engine_for(self.settings.effective_database_url)
        self.lock = NamedLock(self.engine, BEAT_LOCK)
        self.host = socket.gethostname()
        self._last_heartbeat = 0.0
        self._wait_for_lock()
        super().__init__(app, *args, **kwargs)

    def _wait_for_lock(self) -> None:
        announced = False
        while True:
            try:
                if self.lock.acquire():
                    log.info("beat lock acquired: this beat is active")
                    return
            except Exception:
                log.warning("beat lock unavailable (database down?)", exc_info=True)
            if not announced:
                log.info("another beat is active: waiting as hot standby")
                announced = True
            self._heartbeat(f"beat-standby@{self.host}")
            time.sleep(self.settings.beat_standby_poll_seconds)

    def _heartbeat(self, component: str) -> None:
        if time.monotonic() - self._last_heartbeat < 30:
            return
        try:
            write_heartbeat(self.engine, component, {"host": self.host, "pid": os.getpid()})
            self._last_heartbeat = time.monotonic()
        except Exception:
            log.warning("beat heartbeat not written", exc_info=True)

    def setup_schedule(self) -> None:
        # Never run before: due at once, so a beat started mid-window still sends that window's job.
        never = datetime(1970, 1, 1, tzinfo=UTC)
        self.merge_inplace(
            {name: {**entry, "last_run_at": never} for name, entry in beat_schedule(self.settings).items()}
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.lock.alive():
            # The database dropped our session (restart, failover): stand by again rather than risk two
            # active beats; per-window idempotency covers the moment of overlap.
            log.warning("beat lock lost: standing by")
            self._last_heartbeat = 0.0
            self._wait_for_lock()
        self._heartbeat("beat")
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        super().close()
        self.lock.release()
