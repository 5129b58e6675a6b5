from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, Text, cast, func, select

from cidadao.config import load_settings
from cidadao.data import sample_paths
from cidadao.domain.records import Rejection
from cidadao.monitor.ingest import IngestFailed, IngestStats, ingest_file, ingest_pncp, ingest_raw
from cidadao.sources.files import line_share, read_records
from cidadao.sources.pncp import PncpClient
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.models import BuyerRow, IngestionRunRow, QuarantineRow, RecordRow, WatermarkRow


def raw_contratacao(number: int, day: date = date(2025, 1, 2), modalidade: int = 8) -> dict[str, Any]:
    stamp = datetime.combine(day, time(9, 30)).isoformat()
    return {
        "numeroControlePNCP": f"06140404000167-1-{number:06d}/2025",
        "anoCompra": 2025,
        "sequencialCompra": number,
        "modalidadeId": modalidade,
        "modalidadeNome": "Dispensa" if modalidade == 8 else "Inexigibilidade",
        "objetoCompra": f"Aquisição de medicamentos, processo {number}",
        "valorTotalEstimado": 17500.25,
        "dataPublicacaoPncp": stamp,
        "dataAtualizacao": stamp,
        "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
        "orgaoEntidade": {"cnpj": "06140404000167", "razaoSocial": "MUNICIPIO DE FORTUNA", "esferaId": "M"},
        "unidadeOrgao": {"ufSigla": "MA", "codigoUnidade": "1", "municipioNome": "Fortuna"},
    }


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        records = connection.scalar(select(func.count()).select_from(RecordRow))
        flagged = connection.scalar(select(func.count()).where(RecordRow.needs_analysis))
    return int(records or 0), int(flagged or 0)


def test_second_ingestion_is_all_unchanged_and_one_change_updates_one_row(engine: Engine) -> None:
    raws = [raw_contratacao(n) for n in range(1, 251)]
    first = ingest_raw(engine, "file", raws, batch_size=100)
    assert (first.fetched, first.ingested, first.updated, first.unchanged) == (250, 250, 0, 0)
    assert len(first.changed) == 250
    with transaction(engine) as session:
        session.execute(RecordRow.__table__.update().values(needs_analysis=False))

    second = ingest_raw(engine, "file", raws, batch_size=100)
    assert (second.ingested, second.updated, second.unchanged, second.changed) == (0, 0, 250, [])
    assert counts(engine) == (250, 0)

    raws[41] = {**raws[41], "dataAtualizacao": "2025-01-03T11:00:00"}
    third = ingest_raw(engine, "file", raws, batch_size=100)
    assert (third.ingested, third.updated, third.unchanged) == (0, 1, 249)
    assert third.changed == [raws[41]["numeroControlePNCP"]]
    assert counts(engine) == (250, 1)
    with engine.connect() as connection:
        runs = connection.execute(
            select(IngestionRunRow.status, IngestionRunRow.fetched, IngestionRunRow.updated).order_by(
                IngestionRunRow.id
            )
        ).all()
    assert runs == [("succeeded", 250, 0), ("succeeded", 250, 0), ("succeeded", 250, 1)]


def test_a_stored_record_after_batches_of_new_ones_is_still_found(engine: Engine) -> None:
    # After all-new batches PostgreSQL COPYs without looking up stored versions; the third batch's stored
    # records make that COPY fail, and they must come out unchanged or updated all the same.
    stored = [raw_contratacao(n) for n in range(1, 101)]
    ingest_raw(engine, "file", stored, batch_size=100)
    stored[4] = {**stored[4], "dataAtualizacao": "2025-01-03T11:00:00"}
    fresh = [raw_contratacao(n) for n in range(201, 401)]
    later = [raw_contratacao(n) for n in range(401, 501)]
    stats = ingest_raw(engine, "file", [*fresh, *stored, *later], batch_size=100)
    assert (stats.ingested, stats.updated, stats.unchanged) == (300, 1, 99)
    assert counts(engine) == (400, 400)


def test_the_heap_is_frozen_while_an_ingestion_runs_and_only_then(engine: Engine) -> None:
    frozen: list[int] = []
    raws = [raw_contratacao(n) for n in range(1, 6)]
    ingest_raw(engine, "file", raws, progress=lambda _stats: frozen.append(gc.get_freeze_count()))
    assert frozen
    assert all(frozen)
    assert gc.get_freeze_count() == 0
    # A heap the process froze itself stays frozen.
    gc.freeze()
    try:
        ingest_raw(engine, "file", raws)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_bad_records_are_quarantined_and_never_stop_the_run(engine: Engine) -> None:
    good = [raw_contratacao(n) for n in range(1, 11)]
    bad: list[dict[str, Any] | Rejection] = [
        {**raw_contratacao(90), "valorTotalEstimado": "mil reais"},
        Rejection("line 7: invalid JSON", '{"numeroControlePNCP": "1-'),
    ]
    stats = ingest_raw(engine, "file", [*good[:5], *bad, *good[5:]], batch_size=4)
    assert (stats.fetched, stats.ingested, stats.quarantined) == (12, 10, 2)
    with engine.connect() as connection:
        rows = connection.execute(
            select(QuarantineRow.reason, QuarantineRow.payload, QuarantineRow.run_id)
        ).all()
    assert {row.run_id for row in rows} == {stats.run_id}
    assert any("valorTotalEstimado" in row.reason and "mil reais" in row.payload for row in rows)
    assert any(row.payload == '{"numeroControlePNCP": "1-' for row in rows)


@pytest.mark.postgres
def test_a_value_the_database_refuses_is_quarantined_alone(pg_url: str) -> None:
    upgrade(pg_url)
    engine = engine_for(pg_url)
    raws = [raw_contratacao(n) for n in range(1, 6)]
    raws[2] = {**raws[2], "valorTotalEstimado": 10**17}  # beyond NUMERIC(18, 2)
    stats = ingest_raw(engine, "file", raws)
    assert (stats.ingested, stats.quarantined) == (4, 1)
    with engine.connect() as connection:
        reason, number = connection.execute(select(QuarantineRow.reason, QuarantineRow.control_number)).one()
    assert reason.startswith("refused by the database")
    assert number == raws[2]["numeroControlePNCP"]
    engine.dispose()


def test_a_failing_source_marks_the_run_failed_and_keeps_what_was_stored(engine: Engine) -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield from (raw_contratacao(n) for n in range(1, 4))
        raise ConnectionError("PNCP fora do ar")

    with pytest.raises(IngestFailed, match="PNCP fora do ar") as failure:
        ingest_raw(engine, "pncp", source(), batch_size=2)
    assert failure.value.stats.ingested == 2
    with engine.connect() as connection:
        run = connection.execute(select(IngestionRunRow)).one()
    assert run.status == "failed"
    assert run.error == "ConnectionError: PNCP fora do ar"
    assert (run.ingested, run.finished_at is not None) == (2, True)
    assert counts(engine)[0] == 2


class FakePncp:
    """Pages of a fixed set of records per (endpoint, modalidade, day); can fail once after N pages."""

    def __init__(self, pages_per_day: int = 3, per_page: int = 4, fail_after: int | None = None) -> None:
        self.pages_per_day = pages_per_day
        self.per_page = per_page
        self.fail_after = fail_after
        self.served = 0
        self.calls: list[tuple[str, date, date, int | None, int]] = []

    def iter_pages(
        self, endpoint: str, start: date, end: date, modalidade: int | None = None, first_page: int = 1
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        self.calls.append((endpoint, start, end, modalidade, first_page))
        assert endpoint == "contratacoes"
        assert modalidade is not None
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        records = [
            raw_contratacao(day.toordinal() % 10_000 * 1000 + modalidade * 100 + i, day, modalidade)
            for day in days
            for i in range(self.pages_per_day * self.per_page)
        ]
        total = (len(records) + self.per_page - 1) // self.per_page
        for page in range(first_page, total + 1):
            if self.fail_after is not None and self.served == self.fail_after:
                self.fail_after = None
                raise TimeoutError("PNCP timeout after retries")
            self.served += 1
            yield page, records[(page - 1) * self.per_page : page * self.per_page]


def pncp_settings(**overrides: Any) -> Any:
    return load_settings(pncp_modalidades="8,9", pncp_window_days=2, **overrides)


def test_crash_mid_window_then_resume_stores_everything_once(engine: Engine) -> None:
    settings = pncp_settings()
    start, end = date(2025, 1, 1), date(2025, 1, 3)  # windows [1-2] and [3]
    crashing = FakePncp(fail_after=7)  # window 1: 6 pages per modalidade; fails on modalidade 9, page 2
    with pytest.raises(IngestFailed, match="PNCP timeout"):
        ingest_pncp(engine, settings, start, end, crashing, endpoints=["contratacoes"])
    assert counts(engine)[0] == 7 * 4
    with engine.connect() as connection:
        mark = connection.execute(select(WatermarkRow)).one()
    assert mark.cursor == {"window": ["2025-01-01", "2025-01-02"], "modalidade": 9, "page": 1}

    resumed = FakePncp()
    stats = ingest_pncp(engine, settings, start, end, resumed, endpoints=["contratacoes"])
    # Resumes inside window 1 at modalidade 9, page 2; modalidade 8 of that window is not fetched again.
    assert resumed.calls[0] == ("contratacoes", start, date(2025, 1, 2), 9, 2)
    assert [call[3:] for call in resumed.calls[1:]] == [(8, 1), (9, 1)]
    total = 2 * (2 + 1) * 3 * 4  # modalidades x days x pages x records
    assert counts(engine)[0] == total
    assert stats.ingested == total - 7 * 4
    with engine.connect() as connection:
        distinct = connection.scalar(select(func.count(func.distinct(RecordRow.control_number))))
        mark = connection.execute(select(WatermarkRow)).one()
    assert distinct == total
    assert (mark.position, mark.cursor) == (datetime(2025, 1, 4), None)


def test_incremental_runs_start_from_the_watermark_minus_the_overlap(engine: Engine) -> None:
    settings = pncp_settings(pncp_overlap_minutes=90)
    with transaction(engine) as session:
        session.add(WatermarkRow(source="pncp:contratacoes", position=datetime(2025, 1, 5, 1, 0)))
    client = FakePncp(pages_per_day=1)
    stats = ingest_pncp(engine, settings, end=date(2025, 1, 6), client=client, endpoints=["contratacoes"])
    # 01:00 minus 90 minutes falls on the 4th: that day is fetched again, idempotently.
    assert {call[1] for call in client.calls} == {date(2025, 1, 4), date(2025, 1, 6)}
    assert stats.ingested == 2 * 3 * 4
    with engine.connect() as connection:
        position = connection.scalar(select(WatermarkRow.position))
        run = connection.execute(select(IngestionRunRow)).one()
    assert position == datetime(2025, 1, 7)
    assert (run.source, run.status, run.window_start) == ("pncp", "succeeded", datetime(2025, 1, 4))


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.__tablename__: int(connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in (RecordRow, BuyerRow, QuarantineRow)
        }


def test_shipped_sample_twice_then_one_changed_date_updates_exactly_one_row(engine: Engine) -> None:
    path = sample_paths().contratacoes
    first = ingest_file(engine, path)
    assert (first.fetched, first.ingested, first.quarantined) == (89, 89, 0)
    after_first = table_counts(engine)
    assert after_first == {"records": 89, "buyers": 64, "quarantine": 0}
    with transaction(engine) as session:
        session.execute(RecordRow.__table__.update().values(needs_analysis=False))

    second = ingest_file(engine, path)
    assert (second.ingested, second.updated, second.unchanged) == (0, 0, 89)
    assert table_counts(engine) == after_first

    raws = list(read_records(path))
    target = raws[10]
    assert isinstance(target, dict)
    raws[10] = {**target, "dataAtualizacao": "2025-01-20T10:00:00"}
    third = ingest_raw(engine, "file", raws)
    assert (third.ingested, third.updated, third.unchanged) == (0, 1, 88)
    assert table_counts(engine) == after_first
    with engine.connect() as connection:
        flagged = connection.execute(
            select(RecordRow.control_number, RecordRow.source_updated_at).where(RecordRow.needs_analysis)
        ).all()
    assert flagged == [(target["numeroControlePNCP"], datetime(2025, 1, 20, 10, 0))]


def test_file_lines_are_stored_as_written_and_hash_like_the_same_records_from_the_api(
    engine: Engine, tmp_path: Path
) -> None:
    # Text the COPY format must escape, in typed columns and in the raw JSON; lines padded with tabs and CRLF.
    texts = ["tab\there", "line\nbreak", "carriage\rreturn", "back\\slash \\N", "\\N", 'quote " ✓ çã']
    raws = [
        {**raw_contratacao(n + 1), "objetoCompra": text, "extra": {"notes": [text]}}
        for n, text in enumerate(texts)
    ]
    lines = [orjson.dumps(raw).replace(b'":', b'":\t').replace(b'{"', b'{ \t"') + b"\r\n" for raw in raws]
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(lines))

    first = ingest_file(engine, path)
    assert (first.ingested, first.quarantined) == (len(texts), 0)
    with engine.connect() as connection:
        stored = connection.execute(
            select(RecordRow.object, RecordRow.raw).order_by(RecordRow.sequence)
        ).all()
    assert stored == [(text, raw) for text, raw in zip(texts, raws, strict=True)]
    if engine.dialect.name == "postgresql":  # the json column keeps the line itself, padding and all
        with engine.connect() as connection:
            texts_stored = connection.execute(
                select(cast(RecordRow.raw, Text)).order_by(RecordRow.sequence)
            ).scalars()
            assert list(texts_stored) == [line.strip().decode() for line in lines]

    again = ingest_raw(engine, "pncp", raws)
    assert (again.ingested, again.updated, again.unchanged) == (0, 0, len(texts))


def test_real_client_over_recorded_pages_then_a_failing_endpoint_fails_the_run(engine: Engine) -> None:
    sample = [raw for raw in read_records(sample_paths().contratacoes) if isinstance(raw, dict)]
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith("/v1/contratos"):
            return httpx.Response(503)
        page, size = int(request.url.params["pagina"]), int(request.url.params["tamanhoPagina"])
        chunk = sample[(page - 1) * size : page * size]
        pages = (len(sample) + size - 1) // size
        body = {"data": chunk, "totalRegistros": len(sample), "totalPaginas": pages, "numeroPagina": page}
        return httpx.Response(200, json={**body, "paginasRestantes": pages - page, "empty": False})

    settings = load_settings(pncp_modalidades="6", pncp_max_retries=1, pncp_requests_per_second=1000)
    client = PncpClient(settings, transport=httpx.MockTransport(handler), sleep=lambda _: None)
    with pytest.raises(IngestFailed, match="HTTP 503"):
        ingest_pncp(engine, settings, date(2025, 1, 1), date(2025, 1, 1), client)
    assert [r.url.params["pagina"] for r in requests if "contratacoes" in r.url.path] == ["1", "2"]
    assert table_counts(engine)["records"] == 89
    with engine.connect() as connection:
        run = connection.execute(select(IngestionRunRow)).one()
        marks = dict(connection.execute(select(WatermarkRow.source, WatermarkRow.cursor)).all())
    assert (run.status, run.ingested) == ("failed", 89)
    assert "HTTP 503" in (run.error or "")
    assert marks == {"pncp:contratacoes@20250101-20250101": None}


def shared_file(path: Path) -> list[bytes]:
    """JSON Lines of 60 dispensas, a later version of two of them further down, and three unusable lines."""
    lines = [orjson.dumps(raw_contratacao(n)) for n in range(1, 61)]
    for number in (7, 8):
        later = {
            **raw_contratacao(number),
            "valorTotalEstimado": 99.5,
            "dataAtualizacao": "2025-03-01T10:00:00",
        }
        lines.append(orjson.dumps(later))
    lines += [
        b'{"numeroControlePNCP": "1-',
        orjson.dumps({**raw_contratacao(70), "valorTotalEstimado": "x"}),
        b"[1]",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


@pytest.mark.postgres
def test_a_file_shared_by_two_processes_is_stored_as_by_one(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    engine = engine_for(pg_url)
    path = tmp_path / "records.jsonl"
    lines = shared_file(path)
    shares = {line_share(line, number, 2) for number, line in enumerate(lines, start=1)}
    assert shares == {0, 1}  # both processes get work
    seen: list[dict[str, int]] = []
    stats = ingest_file(engine, path, jobs=2, progress=lambda s: seen.append(s.counts()))
    # As in one process: a later version in the same batch replaces the earlier before it is stored.
    assert stats.counts() == {"fetched": 65, "ingested": 60, "updated": 0, "unchanged": 2, "quarantined": 3}
    assert seen[-1] == stats.counts()
    assert sorted(stats.changed) == sorted(
        {str(raw_contratacao(n)["numeroControlePNCP"]) for n in range(1, 61)}
    )
    with engine.connect() as connection:
        runs = connection.execute(
            select(
                IngestionRunRow.id, IngestionRunRow.status, IngestionRunRow.fetched, IngestionRunRow.ingested
            )
        ).all()
        stored = select(RecordRow.control_number, RecordRow.value_estimated)
        values = dict(connection.execute(stored).tuples().all())
        reasons = connection.scalars(select(QuarantineRow.reason)).all()
    assert [tuple(run) for run in runs] == [(stats.run_id, "succeeded", 65, 60)]  # both shares counted
    assert len(values) == 60
    assert values["06140404000167-1-000007/2025"] == values["06140404000167-1-000008/2025"] == 99.5
    assert len(reasons) == 3
    assert all(reason for reason in reasons)
    again = ingest_file(engine, path, jobs=2)
    assert (again.unchanged, again.ingested, again.updated) == (62, 0, 0)


def test_jobs_fall_back_to_one_process_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    path = tmp_path / "records.jsonl"
    shared_file(path)
    stats = ingest_file(engine_for(sqlite_url), path, jobs=2)
    assert (stats.ingested, stats.unchanged, stats.quarantined) == (60, 2, 3)


def test_every_version_of_a_record_goes_to_the_same_share() -> None:
    first = orjson.dumps(raw_contratacao(5))
    later = orjson.dumps({**raw_contratacao(5), "valorTotalEstimado": 1.0, "objetoCompra": "outro"})
    spaced = first.replace(b'"numeroControlePNCP":', b'"numeroControlePNCP" : ')
    for count in (2, 3, 4):
        assert line_share(first, 1, count) == line_share(later, 999, count) == line_share(spaced, 42, count)
    assert [line_share(b"[1]", number, 2) for number in (1, 2, 3)] == [1, 0, 1]
    spread = [line_share(orjson.dumps(raw_contratacao(n)), n, 2) for n in range(1000)]
    assert 400 < sum(spread) < 600


def test_a_failure_in_a_share_process_reaches_the_caller_with_its_counts() -> None:
    failure = pickle.loads(
        pickle.dumps(IngestFailed("OperationalError: gone", IngestStats(fetched=3, ingested=2)))
    )
    assert str(failure) == "OperationalError: gone"
    assert failure.stats.counts()["ingested"] == 2
