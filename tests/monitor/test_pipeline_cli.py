from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.store.db import engine_for
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
