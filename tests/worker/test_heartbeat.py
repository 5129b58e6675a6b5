from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cidadao.config import load_settings
from cidadao.store.db import transaction, upgrade
from cidadao.store.models import AlertOutboxRow, JobRunRow
from cidadao.worker.heartbeat import beat, heartbeat_job, heartbeats


def test_heartbeat_rows_merge_their_detail(engine: Engine) -> None:
    beat(engine, "worker@a", {"probe": "1"})
    beat(engine, "worker@a", {"heartbeat_window": "w"})
    seen, detail = heartbeats(engine)["worker@a"]
    assert detail == {"probe": "1", "heartbeat_window": "w"}
    assert seen is not None


def test_overdue_jobs_raise_one_system_alert_per_heartbeat_window(engine: Engine, tmp_path: Path) -> None:
    settings = load_settings(alert_file=tmp_path / "alerts.jsonl")
    long_ago = datetime.now(UTC) - timedelta(days=3)
    with transaction(engine) as session:  # the system first ran three days ago, and nothing since
        session.add(
            JobRunRow(job="monitor_contratacoes", window_start=long_ago, status="failed", started_at=long_ago)
        )
    window = datetime(2026, 11, 26, 12, 5, tzinfo=UTC)

    first = heartbeat_job(engine, settings, window, window)
    again = heartbeat_job(engine, settings, window, window)

    assert "monitor_contratacoes" in first["stale"]
    assert (first["alerts"], again["alerts"]) == (1, 0)
    with engine.connect() as connection:
        row = connection.execute(select(AlertOutboxRow.kind, AlertOutboxRow.payload)).one()
    assert row.kind == "system"
    assert row.payload["type"] == "system.stale_jobs"
    assert "Tarefas periódicas atrasadas" in row.payload["data"]["message"]


WATCHDOG = """
import os, pathlib, signal, sys, time
from cidadao.config import load_settings
from cidadao.worker import heartbeat

marker = pathlib.Path(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: (marker.write_text("restarted"), os._exit(0)))
settings = load_settings(
    database_url=sys.argv[1], worker_probe_interval_seconds=1, worker_probe_timeout_seconds=3,
    task_time_limit_seconds=10,
)

class Broker:
    def send_task(self, name, args, queue, expires):
        if sys.argv[3] == "consuming":  # the probe task runs and answers
            heartbeat.beat(heartbeat.engine_for(settings.effective_database_url),
                           heartbeat.worker_component(args[0]), {"probe": args[1]})

heartbeat.Watchdog(Broker(), "w@test", settings).start()
time.sleep(6)
marker.write_text("kept")
"""


@pytest.mark.parametrize(("mode", "expected"), [("consuming", "kept"), ("stuck", "restarted")])
def test_watchdog_restarts_a_worker_whose_probes_go_unanswered(
    sqlite_url: str, tmp_path: Path, mode: str, expected: str
) -> None:
    upgrade(sqlite_url)
    marker = tmp_path / "marker"
    script = textwrap.dedent(WATCHDOG)
    subprocess.run([sys.executable, "-c", script, sqlite_url, str(marker), mode], check=True, timeout=60)
    assert marker.read_text() == expected
