from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.sources.files import read_records
from cidadao.sources.generator import write_jsonl
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import engine_for
from cidadao.store.models import IngestionRunRow, RecordRow, WatermarkRow

runner = CliRunner()


def test_ingest_pncp_against_a_local_pncp_fails_cleanly_then_resumes_and_is_idempotent(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "published.jsonl"
    write_jsonl(path, 400, seed=11)
    records = [raw for raw in read_records(path) if isinstance(raw, dict)]
    env = {
        "DATABASE_URL": db_url,
        "PNCP_WINDOW_DAYS": "365",
        "PNCP_MAX_RETRIES": "0",
        "PNCP_REQUESTS_PER_SECOND": "1000",
    }
    command = ["ingest", "pncp", "--from", "2024-01-01", "--to", "2026-10-31"]
    with ReplayServer(records) as pncp:
        env["PNCP_BASE_URL"] = pncp.url
        pncp.fail_next(status=503, endpoint="contratos")
        failed = runner.invoke(app, command, env=env)
        assert failed.exit_code == 1, failed.output
        assert "ingestion failed" in failed.output
        assert "HTTP 503" in failed.output
        assert "Traceback" not in failed.output

        served = len(pncp.requests)
        resumed = runner.invoke(app, command, env=env)
        assert resumed.exit_code == 0, resumed.output
        # The contratações windows were complete: only the failed endpoint is fetched again.
        assert {endpoint for endpoint, _query in pncp.requests[served:]} == {"contratos"}
        again = runner.invoke(app, command, env=env)
        assert again.exit_code == 0, again.output
        assert f"│ {len(records)}     │ 0        │ 0       │ {len(records)}       │ 0 " in again.output

    with engine_for(db_url).connect() as connection:
        stored = connection.scalar(select(func.count(func.distinct(RecordRow.control_number))))
        total = connection.scalar(select(func.count()).select_from(RecordRow))
        runs = connection.execute(select(IngestionRunRow.status).order_by(IngestionRunRow.id)).scalars().all()
        cursors = connection.execute(select(WatermarkRow.cursor)).scalars().all()
    assert stored == total == len(records)
    assert runs == ["failed", "succeeded", "succeeded"]
    assert cursors == [None, None]
