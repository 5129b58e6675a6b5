from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from cidadao.api.app import create_app
from cidadao.config import Settings
from cidadao.store.db import engine_for
from cidadao.store.models import AlertOutboxRow, HeartbeatRow, IngestionRunRow, JobRunRow

from .conftest import TestClient, make_settings


def _healthy_state(settings: Settings, *, age: timedelta = timedelta(0)) -> None:
    now = datetime.now(UTC) - age
    with engine_for(settings.effective_database_url).begin() as connection:
        connection.execute(
            insert(HeartbeatRow),
            [{"component": "beat", "seen_at": now}, {"component": "worker@host-1", "seen_at": now}],
        )
        connection.execute(
            insert(IngestionRunRow).values(source="pncp", status="succeeded", started_at=now, finished_at=now)
        )


def test_liveness_does_no_io() -> None:
    # A database that does not exist: liveness must not notice.
    settings = make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with TestClient(create_app(settings)) as client:
        for path in ("/health", "/health/live"):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}


def test_ready_when_every_dependency_is_fine(sqlite_url: str, tmp_path: Path, seeded: Any) -> None:
    settings = make_settings(sqlite_url, alert_file=tmp_path / "alerts.jsonl")
    _healthy_state(settings)
    with TestClient(create_app(settings)) as client:
        response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert {name for name, check in body["checks"].items() if check["status"] == "ok"} == {
        "database",
        "broker",
        "monitor",
        "heartbeats",
        "dead_letters",
        "alert_channels",
    }


def test_not_ready_names_the_failing_checks(sqlite_url: str, seeded: Any) -> None:
    settings = make_settings(sqlite_url)
    _healthy_state(settings, age=timedelta(hours=2))
    with engine_for(sqlite_url).begin() as connection:
        connection.execute(
            insert(AlertOutboxRow).values(
                idempotency_key="k1", finding_id=1, channel="email", payload={}, status="dead"
            )
        )
    with TestClient(create_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    failing = {name for name, check in checks.items() if check["status"] == "fail"}
    assert failing == {"monitor", "heartbeats", "dead_letters", "alert_channels"}
    assert "beat last seen" in checks["heartbeats"]["detail"]
    assert checks["dead_letters"]["data"] == {"dead": 1}
    assert checks["database"]["status"] == "ok"


def test_hanging_database_and_broker_fail_fast() -> None:
    # A loopback listener that accepts connections and never answers: the worst kind of dependency.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        settings = make_settings(
            f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=3",
            redis_url=f"redis://127.0.0.1:{port}/0",
        )
        with TestClient(create_app(settings)) as client:
            started = time.monotonic()
            response = client.get("/health/ready")
            elapsed = time.monotonic() - started
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert elapsed < 3
    assert checks["database"] == {"status": "fail", "detail": "no answer within 2s", "data": None}
    assert checks["broker"]["status"] == "fail"


def test_real_redis_broker_answers(sqlite_url: str, seeded: Any) -> None:
    settings = make_settings(sqlite_url, redis_url="redis://127.0.0.1:6379/0")
    with TestClient(create_app(settings)) as client:
        check = client.get("/health/ready").json()["checks"]["broker"]
    assert check["status"] == "ok"
    assert "ping" in check["detail"]


def test_a_recent_monitor_job_run_counts_as_monitoring(sqlite_url: str, tmp_path: Path, seeded: Any) -> None:
    settings = make_settings(sqlite_url, alert_file=tmp_path / "alerts.jsonl")
    now = datetime.now(UTC)
    with engine_for(sqlite_url).begin() as connection:
        connection.execute(
            insert(HeartbeatRow),
            [{"component": "beat", "seen_at": now}, {"component": "worker@host-2", "seen_at": now}],
        )
        connection.execute(
            insert(JobRunRow).values(
                job="monitor_contratacoes", window_start=now, status="succeeded", finished_at=now
            )
        )
    with TestClient(create_app(settings)) as client:
        body = client.get("/health/ready").json()
    assert body["checks"]["monitor"]["status"] == "ok"
    assert body["status"] == "ready"
