from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select

from cidadao.config import Settings, load_settings
from cidadao.monitor import analysis, pipeline
from cidadao.store.models import AlertOutboxRow, FindingRow, IngestionRunRow, RecordRow

FORTUNA = ("06140404000167", "MUNICIPIO DE FORTUNA")
OTHER = ("00394460005887", "MINISTERIO DA FAZENDA")


def dispensa(number: int, value: float, buyer: tuple[str, str] = FORTUNA, day: int = 2) -> dict[str, Any]:
    stamp = datetime.combine(date(2025, 3, day), time(9, 30)).isoformat()
    return {
        "numeroControlePNCP": f"{buyer[0]}-1-{number:06d}/2025",
        "anoCompra": 2025,
        "sequencialCompra": number,
        "modalidadeId": 8,
        "modalidadeNome": "Dispensa",
        "objetoCompra": "Aquisição de medicamentos para a farmácia básica",
        "valorTotalEstimado": value,
        "valorTotalHomologado": value,
        "dataPublicacaoPncp": stamp,
        "dataAtualizacao": stamp,
        "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
        "orgaoEntidade": {"cnpj": buyer[0], "razaoSocial": buyer[1], "esferaId": "M", "poderId": "E"},
        "unidadeOrgao": {
            "ufSigla": "MA",
            "codigoUnidade": "1",
            "nomeUnidade": "Sede",
            "municipioNome": "Fortuna",
        },
    }


def write_jsonl(path: Path, raws: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(raw) + b"\n" for raw in raws))
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(alert_file=tmp_path / "alerts.jsonl", alert_min_severity="low")


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        count = lambda model: int(connection.scalar(select(func.count()).select_from(model)) or 0)  # noqa: E731
        flagged = connection.scalar(select(func.count()).where(RecordRow.needs_analysis))
        return {
            "records": count(RecordRow),
            "findings": count(FindingRow),
            "outbox": count(AlertOutboxRow),
            "flagged": int(flagged or 0),
        }


def alert_lines(settings: Settings) -> list[dict[str, Any]]:
    assert settings.alert_file is not None
    if not settings.alert_file.exists():
        return []
    return [json.loads(line) for line in settings.alert_file.read_text().splitlines()]


def test_pass_from_files_stores_findings_alerts_and_delivers_once(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    # One dispensa above the art. 75, II limit; three below it that together exceed it (fracionamento).
    raws = [dispensa(1, 900_000.0), dispensa(2, 40_000.0), dispensa(3, 41_000.0), dispensa(4, 39_000.0)]
    path = write_jsonl(tmp_path / "records.jsonl", raws)

    first = pipeline.run_pass(engine, settings, files=[path], include_global=True)

    assert first.ingest["ingested"] == 4
    assert first.analysis["changed"] == 4
    counts = table_counts(engine)
    assert counts["records"] == 4
    assert counts["flagged"] == 0
    with engine.connect() as connection:
        rules = {row[0] for row in connection.execute(select(FindingRow.rule)).all()}
        run = connection.execute(select(IngestionRunRow).where(IngestionRunRow.id == first.run_id)).one()
    assert {"over_limit", "split_purchase"} <= rules
    assert run.status == "succeeded"
    assert (
        run.findings == counts["findings"] == first.analysis["findings"] + first.global_analysis["findings"]
    )
    assert counts["outbox"] > 0
    assert first.dispatch["delivered"] == counts["outbox"]
    delivered = alert_lines(settings)
    assert len(delivered) == counts["outbox"]

    again = pipeline.run_pass(engine, settings, files=[path], include_global=True)

    assert again.ingest["unchanged"] == 4
    assert again.analysis["changed"] == 0
    assert table_counts(engine) == counts
    assert alert_lines(settings) == delivered


def test_new_record_reanalyses_only_its_buyer_year_group(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    others = [dispensa(n, 1_000.0 + n, buyer=OTHER) for n in range(1, 31)]
    base = [dispensa(1, 30_000.0), dispensa(2, 20_000.0)]
    pipeline.run_pass(engine, settings, files=[write_jsonl(tmp_path / "a.jsonl", others + base)])
    with engine.connect() as connection:
        split_before = connection.scalar(
            select(func.count()).where(
                FindingRow.rule == "split_purchase", FindingRow.buyer_cnpj == FORTUNA[0]
            )
        )
    assert split_before == 0

    stats = pipeline.run_pass(
        engine, settings, files=[write_jsonl(tmp_path / "b.jsonl", [dispensa(3, 25_000.0, day=9)])]
    )

    assert stats.analysis["changed"] == 1
    assert stats.analysis["loaded"] == 3  # Fortuna's 2025 group, not the other buyer's 30 records
    with engine.connect() as connection:
        flagged = connection.scalars(
            select(FindingRow.record).where(FindingRow.rule == "split_purchase").order_by(FindingRow.record)
        ).all()
    assert flagged == sorted(raw["numeroControlePNCP"] for raw in [*base, dispensa(3, 25_000.0)])


def test_crash_before_commit_leaves_nothing_half_written(
    engine: Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "records.jsonl", [dispensa(1, 900_000.0), dispensa(2, 800_000.0)])

    def crash(*_: Any, **__: Any) -> int:
        raise RuntimeError("killed between findings and alerts")

    monkeypatch.setattr(analysis, "enqueue_alerts", crash)
    with pytest.raises(RuntimeError):
        pipeline.run_pass(engine, settings, files=[path])
    counts = table_counts(engine)
    assert (counts["findings"], counts["outbox"], counts["flagged"]) == (0, 0, 2)
    with engine.connect() as connection:
        assert connection.scalar(select(IngestionRunRow.status)) == "failed"

    monkeypatch.undo()
    pipeline.run_pass(engine, settings, files=[path])
    pipeline.run_pass(engine, settings, files=[path])

    counts = table_counts(engine)
    assert counts["flagged"] == 0
    with engine.connect() as connection:
        pairs = connection.execute(select(FindingRow.record, FindingRow.rule)).all()
        keys = connection.scalars(select(AlertOutboxRow.idempotency_key)).all()
    assert len(pairs) == len(set(pairs)) > 0
    assert len(keys) == len(set(keys)) == counts["outbox"] > 0
    assert len(alert_lines(settings)) == counts["outbox"]


def test_investigation_of_a_buyer_analyses_its_records_now(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "records.jsonl", [dispensa(1, 900_000.0), dispensa(2, 10_000.0, buyer=OTHER)]
    )
    pipeline.run_pass(engine, settings, files=[path])
    with engine.begin() as connection:
        connection.execute(FindingRow.__table__.delete())

    result = pipeline.investigate(engine, settings, "buyer", {"cnpj": FORTUNA[0]})

    assert result["records"] == 1
    assert result["analysis"]["findings"] >= 1
    with engine.connect() as connection:
        buyers = set(connection.scalars(select(FindingRow.buyer_cnpj)).all())
    assert buyers == {FORTUNA[0]}
