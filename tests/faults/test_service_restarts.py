"""Faults 2 and 4: Redis restarted empty, PostgreSQL restarted, in the middle of the running system."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.faults.harness import (
    PostgresServer,
    RedisServer,
    Stack,
    engine_of,
    stack_env,
    today_dispensas,
    wait_for,
)

from cidadao.api.app import create_app
from cidadao.config import load_settings
from cidadao.sources.replay import ReplayServer
from cidadao.store.models import AlertOutboxRow, FindingRow, JobRunRow, RecordRow
from cidadao.worker.app import create_celery

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette would prefer httpx2; httpx works the same here
    from starlette.testclient import TestClient

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(170)]

FAST = {
    "MONITOR_INTERVAL_SECONDS": "10",
    "DISPATCH_INTERVAL_SECONDS": "2",
    "HEARTBEAT_INTERVAL_SECONDS": "5",
    "WORKER_PROBE_INTERVAL_SECONDS": "2",
    "WORKER_PROBE_TIMEOUT_SECONDS": "20",
    "BEAT_STANDBY_POLL_SECONDS": "1",
}


def stored(env: dict[str, str], records: list[dict[str, object]]) -> bool:
    numbers = [str(record["numeroControlePNCP"]) for record in records]
    with engine_of(env).connect() as connection:
        found = connection.scalar(
            select(func.count()).where(RecordRow.control_number.in_(numbers), ~RecordRow.needs_analysis)
        )
    return found == len(numbers)


def all_alerts_delivered(env: dict[str, str], records: list[dict[str, object]]) -> bool:
    """Every record analysed, it has findings, and every outbox row is delivered and in the alert file."""
    if not stored(env, records):
        return False
    numbers = [str(record["numeroControlePNCP"]) for record in records]
    with engine_of(env).connect() as connection:
        findings = connection.scalar(select(func.count()).where(FindingRow.record.in_(numbers)))
        keys = connection.execute(select(AlertOutboxRow.idempotency_key, AlertOutboxRow.status)).all()
    path = Path(env["ALERT_FILE"])
    written = {json.loads(line)["id"] for line in path.read_text().splitlines()} if path.exists() else set()
    return bool(findings) and all(status == "delivered" and key in written for key, status in keys)


def keep_worker_running(services: Stack, restarts: list[int]) -> None:
    """What a supervisor does: start a worker that exited (the watchdog exits one that stopped consuming)."""
    process = services.processes.get("worker")
    if process is not None and process.poll() is not None:
        services.processes.pop("worker")
        restarts.append(process.returncode)
        services.worker(pool="prefork")


@pytest.mark.postgres
def test_redis_restarted_empty_mid_run_worker_and_beat_recover_nothing_lost(
    pg_url: str,
    redis_server: RedisServer,
    replay: ReplayServer,
    stack: Callable[[dict[str, str]], Stack],
    tmp_path: Path,
) -> None:
    env = stack_env(pg_url, redis_server.url, replay, tmp_path, **FAST)
    services = stack(env)
    services.worker(pool="prefork")
    services.beat()
    before = today_dispensas(300)
    replay.publish(before)
    wait_for(lambda: all_alerts_delivered(env, before), 60, "the first records' alerts")

    redis_server.kill()
    time.sleep(3)
    redis_server.start()  # same port, empty: queues, unacked messages, everything gone
    after = today_dispensas(300, start=1001)
    replay.publish(after)
    restarts: list[int] = []

    def recovered() -> bool:
        keep_worker_running(services, restarts)
        return all_alerts_delivered(env, before + after)

    wait_for(recovered, 100, "records published after the Redis reset to be alerted", every=1)
    assert services.processes["beat"].poll() is None  # beat reconnected by itself


@pytest.mark.timeout(170)
def test_postgres_restarted_tasks_retry_and_readiness_reports_the_outage(
    redis_server: RedisServer,
    replay: ReplayServer,
    stack: Callable[[dict[str, str]], Stack],
    tmp_path: Path,
) -> None:
    postgres = PostgresServer()
    postgres.start()
    try:
        env = stack_env(postgres.url, redis_server.url, replay, tmp_path, **FAST)
        services = stack(env)
        services.worker(pool="prefork")
        services.beat()
        before = today_dispensas(200)
        replay.publish(before)
        wait_for(lambda: all_alerts_delivered(env, before), 60, "the first records' alerts")
        api = create_app(load_settings(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"]))
        with TestClient(api) as client:
            assert client.get("/health/ready").json()["checks"]["database"]["status"] == "ok"

            postgres.stop()
            after = today_dispensas(200, start=1001)
            replay.publish(after)
            outage = client.get("/health/ready")
            assert outage.status_code == 503
            assert outage.json()["checks"]["database"]["status"] == "fail"
            # Beat stands by while its lock's database is gone; a task sent meanwhile still completes.
            window = datetime(2026, 1, 1, tzinfo=UTC)
            app = create_celery(load_settings(redis_url=redis_server.url))
            app.send_task("cidadao.monitor_contratacoes", kwargs={"window": window.isoformat()})
            time.sleep(8)
            postgres.start()

            restarts: list[int] = []

            def recovered() -> bool:
                keep_worker_running(services, restarts)
                return all_alerts_delivered(env, before + after)

            wait_for(recovered, 100, "records published during the outage to be alerted", every=1)
            assert client.get("/health/ready").json()["checks"]["database"]["status"] == "ok"
        assert services.processes["beat"].poll() is None
        # Whatever task held the worker during the outage (ours or a scheduled one) retried its window.
        assert "transient failure, retrying window" in services.log("worker")

        def window_status() -> str | None:
            with engine_of(env).connect() as connection:
                return connection.scalar(
                    select(JobRunRow.status).where(
                        JobRunRow.job == "monitor_contratacoes", JobRunRow.window_start == window
                    )
                )

        # The task sent during the outage may still be waiting out its retry backoff.
        wait_for(lambda: window_status() == "succeeded", 60, "the window sent during the outage to succeed")
    finally:
        postgres.remove()
