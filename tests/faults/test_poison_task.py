"""Fault 2: a task that keeps killing its worker is parked, not looped.

A prefork worker runs the monitor for one window; every time that window starts again, its pool process is
killed with SIGKILL. Celery redelivers after each WorkerLostError; after JOB_MAX_ATTEMPTS starts the
redelivery must find the window parked and leave it alone, with the worker still serving other windows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from tests.faults.harness import RedisServer, Stack, engine_of, stack_env, today_dispensas, wait_for

from cidadao.config import load_settings
from cidadao.sources.replay import ReplayServer
from cidadao.store.models import IngestionRunRow, JobRunRow
from cidadao.worker.app import create_celery

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(90)]

MAX_ATTEMPTS = 3
JOB = "monitor_contratacoes"
POISON = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
HEALTHY = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


def job_run(engine: Engine, window: datetime) -> tuple[str, int] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(JobRunRow.status, JobRunRow.attempts).where(
                JobRunRow.job == JOB, JobRunRow.window_start == window
            )
        ).one_or_none()
    return None if row is None else (row.status, row.attempts)


def pool_children(worker_pid: int) -> list[int]:
    listed = subprocess.run(["ps", "--ppid", str(worker_pid), "-o", "pid="], capture_output=True, text=True)
    return [int(pid) for pid in listed.stdout.split()]


def test_a_window_that_kills_its_worker_every_time_is_parked_after_max_attempts(
    pg_url: str,
    redis_server: RedisServer,
    replay: ReplayServer,
    stack: Callable[[dict[str, str]], Stack],
    tmp_path: Path,
) -> None:
    replay.publish(today_dispensas(200))
    # Each start of the poison window hangs on a slow page, so the kill always lands inside the body.
    replay.slow_next(20, times=MAX_ATTEMPTS + 2, endpoint="contratacoes")
    env = stack_env(pg_url, redis_server.url, replay, tmp_path, JOB_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    services = stack(env)
    worker = services.worker(pool="prefork")
    engine = engine_of(env)
    app = create_celery(load_settings(redis_url=redis_server.url))
    app.send_task(f"cidadao.{JOB}", kwargs={"window": POISON.isoformat()})

    for attempt in range(1, MAX_ATTEMPTS + 1):
        started = f"start {attempt} of the window"
        wait_for(lambda a=attempt: job_run(engine, POISON) == ("running", a), 45, started, every=0.1)
        children = wait_for(lambda: pool_children(worker.pid), 10, "the pool process")
        for child in children:
            os.kill(child, signal.SIGKILL)

    # The third redelivery claims the window, finds it used up and parks it without running the body.
    wait_for(lambda: job_run(engine, POISON) == ("parked", MAX_ATTEMPTS), 30, "the window to be parked")
    time.sleep(15)  # no fourth start, no loop
    assert job_run(engine, POISON) == ("parked", MAX_ATTEMPTS)
    with engine.connect() as connection:
        succeeded = connection.scalar(
            select(func.count()).select_from(IngestionRunRow).where(IngestionRunRow.status == "succeeded")
        )
    assert succeeded == 0
    assert worker.poll() is None, services.log("worker")
    assert "WorkerLostError" in services.log("worker")

    # The worker survived its dead pool processes and still runs a healthy window to the end.
    replay.clear_faults()
    app.send_task(f"cidadao.{JOB}", kwargs={"window": HEALTHY.isoformat()})
    wait_for(lambda: job_run(engine, HEALTHY) == ("succeeded", 1), 30, "a healthy window", every=0.2)
    assert job_run(engine, POISON) == ("parked", MAX_ATTEMPTS)
    assert worker.poll() is None
