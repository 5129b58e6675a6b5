from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cidadao.cli import app
from cidadao.store.db import engine_for
from cidadao.store.models import IngestionRunRow, QuarantineRow, RecordRow

runner = CliRunner()


def raw_contratacao(number: int) -> dict[str, Any]:
    return {
        "numeroControlePNCP": f"46634044000174-1-{number:06d}/2025",
        "anoCompra": 2025,
        "sequencialCompra": number,
        "modalidadeId": 9,
        "modalidadeNome": "Inexigibilidade",
        "objetoCompra": "Contratação de show artístico para festa municipal",
        "valorTotalEstimado": 120000 + number,
        "dataPublicacaoPncp": "2025-03-10T14:00:00",
        "dataAtualizacao": "2025-03-10T14:00:00",
        "orgaoEntidade": {"cnpj": "46634044000174", "razaoSocial": "MUNICIPIO DE EXEMPLO"},
        "unidadeOrgao": {"ufSigla": "SP", "codigoUnidade": "1"},
    }


# Ten ways a PNCP record can be unusable; each line is what lands in the file.
BROKEN: list[tuple[str, Any]] = [
    ("no control number", lambda raw: {k: v for k, v in raw.items() if k != "numeroControlePNCP"}),
    ("empty control number", lambda raw: {**raw, "numeroControlePNCP": ""}),
    ("non-numeric value", lambda raw: {**raw, "valorTotalEstimado": "cento e vinte mil"}),
    ("boolean value", lambda raw: {**raw, "valorTotalEstimado": True}),
    ("impossible date", lambda raw: {**raw, "dataPublicacaoPncp": "2025-02-30T10:00:00"}),
    ("year out of range", lambda raw: {**raw, "dataAtualizacao": "0202-03-10T14:00:00"}),
    ("wrong type", lambda raw: {**raw, "anoCompra": "dois mil e vinte e cinco"}),
    ("object as string", lambda raw: {**raw, "orgaoEntidade": "MUNICIPIO DE EXEMPLO"}),
    ("not an object", lambda raw: [raw["numeroControlePNCP"]]),
    ("unknown layout", lambda raw: {"foo": raw["numeroControlePNCP"]}),
]


def write_file_with_broken_records(path: Path) -> None:
    lines = []
    for number in range(1000):
        raw = raw_contratacao(number)
        if number % 10 == 0:
            lines.append(orjson.dumps(BROKEN[number // 10 % 10][1](raw)))
        else:
            lines.append(orjson.dumps(raw))
    # One of the "not an object" cases is a line that is not even JSON.
    lines[90] = b'{"numeroControlePNCP": "46634044000174-1-000090/2025", "anoCompra": 20'
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize(
    "command", [["ingest", "file"], ["ingest", "pncp"], ["generate"], ["demo"], ["ingest"]]
)
def test_commands_have_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_file_with_broken_records_ingests_the_rest_and_quarantines_each_with_a_reason(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "contratacoes.jsonl"
    write_file_with_broken_records(path)
    result = runner.invoke(app, ["ingest", "file", str(path)], env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "Traceback" not in result.output
    assert "│ 1000    │ 900      │ 0       │ 0         │ 100 " in result.output
    engine = engine_for(db_url)
    with engine.connect() as connection:
        stored = connection.scalar(select(func.count()).select_from(RecordRow))
        rows = connection.execute(select(QuarantineRow.reason, QuarantineRow.payload)).all()
        run = connection.execute(select(IngestionRunRow)).one()
    assert stored == 900
    assert len(rows) == 100
    assert all(row.reason and row.payload for row in rows)
    assert len({row.reason.split(":")[0] for row in rows}) >= 8  # distinct kinds of reasons
    assert (run.status, run.fetched, run.ingested, run.quarantined) == ("succeeded", 1000, 900, 100)


def test_unmigrated_database_is_refused_with_a_clear_message(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(raw_contratacao(1)))
    done = subprocess.run(
        [sys.executable, "-c", "from cidadao.cli import main; main()", "ingest", "file", str(path)],
        env={"DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "has no schema: run `cidadao db upgrade` first" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_demo_twice_stores_the_sample_once(tmp_path: Path) -> None:
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    assert "│ 89      │ 89       │ 0       │ 0         │ 0 " in first.output
    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0, second.output
    assert "│ 89      │ 0        │ 0       │ 89        │ 0 " in second.output
    assert "Pregão - Eletrônico" in second.output
    engine = engine_for("sqlite:///var/cidadao.sqlite")  # the default database, under the test's cwd
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(RecordRow)) == 89
    engine.dispose()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_generated_file_ingests_completely_and_idempotently(db_url: str, tmp_path: Path, jobs: str) -> None:
    path = tmp_path / "generated.jsonl"
    result = runner.invoke(app, ["generate", "--records", "1500", "--seed", "3", "--out", str(path)])
    assert result.exit_code == 0, result.output
    assert "wrote 1,500 records" in result.output
    assert len(path.read_bytes().splitlines()) == 1500

    env = {"DATABASE_URL": db_url}
    first = runner.invoke(app, ["ingest", "file", str(path), "--jobs", jobs], env=env)
    assert first.exit_code == 0, first.output
    assert "│ 1500    │ 1500     │ 0       │ 0         │ 0 " in first.output
    second = runner.invoke(app, ["ingest", "file", str(path), "--jobs", jobs], env=env)
    assert "│ 1500    │ 0        │ 0       │ 1500      │ 0 " in second.output
    with engine_for(db_url).connect() as connection:
        kinds = dict(connection.execute(select(RecordRow.kind, func.count()).group_by(RecordRow.kind)).all())
    assert set(kinds) == {"contratacao", "contrato"}
    assert sum(kinds.values()) == 1500
