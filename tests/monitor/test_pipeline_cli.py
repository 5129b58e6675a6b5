from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.cli import monitor as monitor_cli
from cidadao.monitor.pipeline import PassResult
from cidadao.store.db import engine_for, upgrade
from cidadao.store.models import AlertOutboxRow, FindingRow, SanctionRow

GOLDEN = Path(__file__).resolve().parents[1] / "redflags" / "golden"
runner = CliRunner()


def test_monitor_once_from_files_with_sanctions_finds_alerts_and_is_idempotent(
    db_url: str, tmp_path: Path
) -> None:
    alerts = tmp_path / "alerts.jsonl"
    env = {"DATABASE_URL": db_url, "ALERT_FILE": str(alerts), "ALERT_MIN_SEVERITY": "high"}
    argv = [
        "monitor", "--once",
        "--from-file", str(GOLDEN / "sanctioned_supplier.input.jsonl"),
        "--sanctions", str(GOLDEN / "sanctioned_supplier.sanctions.csv"),
    ]  # fmt: skip

    first = runner.invoke(app, argv, env=env)
    second = runner.invoke(app, argv, env=env)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "monitor pass" in first.output
    expected = [
        json.loads(line) for line in (GOLDEN / "sanctioned_supplier.expected.jsonl").read_text().splitlines()
    ]
    with engine_for(db_url).connect() as connection:
        flagged = connection.execute(
            select(FindingRow.record, FindingRow.severity).where(FindingRow.rule == "sanctioned_supplier")
        ).all()
        sanctions = connection.scalar(select(func.count()).select_from(SanctionRow))
        outbox = connection.scalar(select(func.count()).select_from(AlertOutboxRow))
    assert sorted(map(tuple, flagged)) == sorted((f["record"], f["severity"]) for f in expected)
    assert sanctions == 1  # the masked CPF cannot be matched and is dropped
    delivered = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(delivered) == outbox >= 1
    assert any(line["data"].get("finding", {}).get("rule") == "sanctioned_supplier" for line in delivered)


class _Stop(Exception):
    pass


def test_monitor_loop_polls_the_fast_path_between_full_passes(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(sqlite_url)
    clock = [0.0]
    calls: list[tuple[str, float]] = []

    def full(*_: Any, **__: Any) -> PassResult:
        calls.append(("pass", clock[0]))
        if len(calls) > 1:
            raise _Stop
        return PassResult(run_id=1)

    def tail(*_: Any, **__: Any) -> PassResult:
        calls.append(("tail", clock[0]))
        return PassResult(run_id=2)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(monitor_cli, "run_pass", full)
    monkeypatch.setattr(monitor_cli, "run_tail", tail)
    monkeypatch.setattr(monitor_cli.time, "sleep", sleep)
    monkeypatch.setattr(monitor_cli.time, "monotonic", lambda: clock[0])
    env = {"DATABASE_URL": sqlite_url, "MONITOR_INTERVAL_SECONDS": "300", "POLL_INTERVAL_SECONDS": "30"}

    result = runner.invoke(app, ["monitor"], env=env)

    assert isinstance(result.exception, _Stop)
    assert calls == [("pass", 0.0), *[("tail", 30.0 * n) for n in range(1, 10)], ("pass", 300.0)]
