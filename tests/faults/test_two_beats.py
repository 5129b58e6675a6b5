"""Fault 3: two beats for three intervals (the active one then killed): each job runs once per window."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.faults.harness import RedisServer, Stack, engine_of, stack_env, today_dispensas, wait_for

from cidadao.config import load_settings
from cidadao.monitor.jobs import as_utc
from cidadao.sources.replay import ReplayServer
from cidadao.store.models import HeartbeatRow, IngestionRunRow, JobRunRow
from cidadao.worker.app import create_celery

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(150)]

INTERVAL = 10


def test_two_beats_give_one_run_per_window_and_the_standby_takes_over(
    pg_url: str,
    redis_server: RedisServer,
    replay: ReplayServer,
    stack: Callable[[dict[str, str]], Stack],
    tmp_path: Path,
) -> None:
    replay.publish(today_dispensas(200))
    env = stack_env(
        pg_url, redis_server.url, replay, tmp_path,
        MONITOR_INTERVAL_SECONDS=str(INTERVAL), DISPATCH_INTERVAL_SECONDS="5", HEARTBEAT_INTERVAL_SECONDS="5",
        BEAT_STANDBY_POLL_SECONDS="0.5",
    )  # fmt: skip
    services = stack(env)
    engine = engine_of(env)
    services.worker("worker-a", pool="prefork")
    services.worker("worker-b", pool="prefork")
    first = services.beat("beat-1")
    second = services.beat("beat-2")
    app = create_celery(load_settings(redis_url=redis_server.url))

    def monitor_windows() -> list[tuple[object, str]]:
        with engine.connect() as connection:
            rows = connection.execute(
                select(JobRunRow.window_start, JobRunRow.status)
                .where(JobRunRow.job == "monitor_contratacoes")
                .order_by(JobRunRow.window_start)
            ).all()
        return [(as_utc(start), status) for start, status in rows]

    def active_beat_pid() -> int | None:
        with engine.connect() as connection:
            detail = connection.scalar(select(HeartbeatRow.detail).where(HeartbeatRow.component == "beat"))
        return int(detail["pid"]) if detail and "pid" in detail else None

    wait_for(lambda: len(monitor_windows()) >= 2, 60, "two monitor windows")
    # A beat without the lock would send the same window again: do exactly that.
    app.send_task("cidadao.monitor_contratacoes", kwargs={"window": monitor_windows()[-1][0].isoformat()})
    active = wait_for(active_beat_pid, 30, "the active beat's heartbeat")
    assert active in (first.pid, second.pid)
    victim = "beat-1" if active == first.pid else "beat-2"
    os.killpg(services.processes[victim].pid, signal.SIGKILL)
    killed_at = len(monitor_windows())
    wait_for(lambda: len(monitor_windows()) >= killed_at + 3, 60, "three more windows after the takeover")
    services.kill("beat-2" if victim == "beat-1" else "beat-1")
    for worker in ("worker-a", "worker-b"):  # warm shutdown: the task in flight finishes
        services.kill(worker, signal.SIGTERM)

    windows = monitor_windows()
    starts = [start for start, _ in windows]
    assert all(status == "succeeded" for _, status in windows)
    # No gap across the takeover, and one row (one run) per window.
    assert all(b - a == timedelta(seconds=INTERVAL) for a, b in itertools.pairwise(starts))
    with engine.connect() as connection:
        monitor_runs = connection.scalar(
            select(func.count())
            .select_from(IngestionRunRow)
            .where(IngestionRunRow.source == "pncp", IngestionRunRow.status == "succeeded")
        )
        per_job = dict(
            connection.execute(
                select(JobRunRow.job, func.count())
                .where(JobRunRow.status == "succeeded")
                .group_by(JobRunRow.job)
            ).all()
        )
        starts_of_ingesting_jobs = connection.scalar(
            select(func.sum(JobRunRow.attempts)).where(
                JobRunRow.job.in_(("monitor_contratacoes", "sync_contratos")), JobRunRow.status == "succeeded"
            )
        )
    # The duplicate send above ran no body. A window's body runs again only when its worker died inside it
    # (the SIGTERM of the pool at the end can do that), and every such start is counted in `attempts`.
    windows_done = per_job["monitor_contratacoes"] + per_job.get("sync_contratos", 0)
    assert windows_done <= monitor_runs <= starts_of_ingesting_jobs
    for job in ("sync_contratos", "critical_summary", "retention_cleanup", "refresh_sanctions"):
        assert per_job.get(job, 0) >= 1, job  # the new beat sends the current window at once
    survivor = "beat-2" if victim == "beat-1" else "beat-1"
    assert "beat lock acquired" in services.log(victim)
    assert "hot standby" in services.log(survivor)
    assert "beat lock acquired" in services.log(survivor)
