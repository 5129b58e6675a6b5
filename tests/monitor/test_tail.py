"""The fast path: poll only what PNCP appended to today's listing, against the local PNCP replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cidadao.config import Settings, load_settings
from cidadao.monitor import pipeline
from cidadao.monitor.ingest import ingest_pncp_tail, tail_key
from cidadao.sources.pncp import Page, PncpClient, Window
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow, FindingRow, IngestionRunRow, RecordRow
from cidadao.store.repositories import get_watermark

DAY = date(2025, 3, 2)
NOW = datetime.combine(DAY, time(18, 0))


def dispensa(number: int, value: float = 30_000.0) -> dict[str, Any]:
    """A dispensa published `number` seconds after 08:00 of DAY, by its own buyer."""
    stamp = (datetime.combine(DAY, time(8)) + timedelta(seconds=number)).isoformat()
    cnpj = f"{30_000_000 + number:08d}000155"
    return {
        "numeroControlePNCP": f"{cnpj}-1-{number:06d}/2025",
        "anoCompra": 2025,
        "sequencialCompra": number,
        "modalidadeId": 8,
        "modalidadeNome": "Dispensa",
        "objetoCompra": "Aquisição de equipamentos hospitalares",
        "valorTotalEstimado": value,
        "valorTotalHomologado": value,
        "dataPublicacaoPncp": stamp,
        "dataAtualizacao": stamp,
        "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
        "orgaoEntidade": {"cnpj": cnpj, "razaoSocial": f"MUNICIPIO TAIL {number}", "esferaId": "M"},
        "unidadeOrgao": {"ufSigla": "PI", "codigoUnidade": "1", "municipioNome": "Tail"},
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        pncp_modalidades="8",
        pncp_page_size=10,
        pncp_requests_per_second=1000.0,
        pncp_max_retries=0,
        alert_file=tmp_path / "alerts.jsonl",
        alert_min_severity="low",
    )


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def client(replay: ReplayServer, settings: Settings) -> Iterator[PncpClient]:
    with PncpClient(settings, base_url=replay.url, sleep=lambda _: None) as pncp:
        yield pncp


def pages_asked(replay: ReplayServer, endpoint: str = "contratacoes") -> list[int]:
    return [int(query["pagina"]) for name, query in replay.requests if name == endpoint]


def records(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(RecordRow)) or 0)


def stored_total(engine: Engine, endpoint: str = "contratacoes", modalidade: int | None = 8) -> int:
    with transaction(engine) as session:
        mark = get_watermark(session, tail_key(endpoint, modalidade, DAY))
        assert mark is not None
        assert mark.cursor is not None
        return int(mark.cursor["total"])


def test_an_unchanged_total_costs_one_request_per_listing(
    engine: Engine, settings: Settings, replay: ReplayServer, client: PncpClient
) -> None:
    replay.publish(dispensa(n) for n in range(1, 26))
    first = ingest_pncp_tail(engine, settings, client, now=NOW)
    assert (first.fetched, first.ingested) == (25, 25)
    assert pages_asked(replay) == [1, 2, 3]
    assert pages_asked(replay, "contratos") == [1]  # nothing there: HTTP 204
    assert tail_key("contratacoes", 8, DAY) == "pncp-tail:contratacoes:8:20250302"
    assert stored_total(engine) == 25

    replay.requests.clear()
    again = ingest_pncp_tail(engine, settings, client, now=NOW)

    assert again.fetched == 0
    assert pages_asked(replay) == [3]  # the page holding the last stored record tells the total
    assert pages_asked(replay, "contratos") == [1]
    assert records(engine) == 25


def test_growth_fetches_only_the_pages_that_can_hold_the_new_records(
    engine: Engine, settings: Settings, replay: ReplayServer, client: PncpClient
) -> None:
    replay.publish(dispensa(n) for n in range(1, 26))
    ingest_pncp_tail(engine, settings, client, endpoints=("contratacoes",), now=NOW)
    replay.requests.clear()

    replay.publish(dispensa(n) for n in range(26, 46))
    grown = ingest_pncp_tail(engine, settings, client, endpoints=("contratacoes",), now=NOW)

    assert pages_asked(replay) == [3, 4, 5]  # records 26..45 sit on pages 3 (26-30), 4 and 5
    assert (grown.ingested, grown.unchanged) == (20, 5)
    assert stored_total(engine) == 45
    assert records(engine) == 45


class CrashAfter:
    """A client that dies (like a killed worker) after serving `pages` pages."""

    def __init__(self, client: PncpClient, pages: int) -> None:
        self.client, self.left = client, pages

    def fetch_page(self, endpoint: str, window: Window, number: int, modalidade: int | None = None) -> Page:
        if self.left == 0:
            raise KeyboardInterrupt("killed")
        self.left -= 1
        return self.client.fetch_page(endpoint, window, number, modalidade)


def test_a_crash_between_pages_resumes_at_the_interrupted_page_without_duplicates(
    engine: Engine, settings: Settings, replay: ReplayServer, client: PncpClient
) -> None:
    replay.publish(dispensa(n, value=900_000.0) for n in range(1, 36))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_tail(
            engine, settings, endpoints=("contratacoes",), client=CrashAfter(client, 2), now=NOW
        )
    assert stored_total(engine) == 20  # pages 1 and 2 were stored with their count
    assert records(engine) == 20
    replay.requests.clear()

    resumed = pipeline.run_tail(engine, settings, endpoints=("contratacoes",), client=client, now=NOW)

    assert pages_asked(replay) == [2, 3, 4]
    assert resumed.ingest["ingested"] == 15
    assert stored_total(engine) == 35
    with engine.connect() as connection:
        findings = connection.execute(select(FindingRow.record, FindingRow.rule)).all()
        outbox = int(connection.scalar(select(func.count()).select_from(AlertOutboxRow)) or 0)
    assert records(engine) == 35
    assert len(findings) == len(set(findings))
    assert {record for record, _ in findings} == {dispensa(n)["numeroControlePNCP"] for n in range(1, 36)}
    assert outbox == len({record for record, _ in findings})  # one alert per record (one buyer each)


def test_new_records_become_findings_and_alerts_once(
    engine: Engine, settings: Settings, replay: ReplayServer, client: PncpClient
) -> None:
    replay.publish([dispensa(1, value=900_000.0), dispensa(2)])
    first = pipeline.run_tail(engine, settings, endpoints=("contratacoes",), client=client, now=NOW)
    assert first.ingest["ingested"] == 2
    assert first.dispatch["delivered"] >= 1

    replay.publish([dispensa(3, value=950_000.0)])
    second = pipeline.run_tail(engine, settings, endpoints=("contratacoes",), client=client, now=NOW)
    third = pipeline.run_tail(engine, settings, endpoints=("contratacoes",), client=client, now=NOW)

    assert second.ingest["ingested"] == 1
    assert third.ingest["fetched"] == 0
    with engine.connect() as connection:
        runs = set(connection.scalars(select(IngestionRunRow.source)).all())
        sources = set(connection.scalars(select(RecordRow.source)).all())
    assert runs == {"pncp-tail"}  # told apart from the full pass's runs; the records are PNCP's
    assert sources == {"pncp"}
    with engine.connect() as connection:
        flagged = set(connection.scalars(select(FindingRow.record)).all())
        outbox = connection.execute(select(AlertOutboxRow.status)).all()
    assert flagged == {dispensa(1)["numeroControlePNCP"], dispensa(3)["numeroControlePNCP"]}
    assert len(outbox) == 2
    assert {status for (status,) in outbox} == {"delivered"}


def test_a_shrunken_listing_restarts_the_count(
    engine: Engine, settings: Settings, replay: ReplayServer, client: PncpClient
) -> None:
    replay.publish(dispensa(n) for n in range(1, 26))
    ingest_pncp_tail(engine, settings, client, endpoints=("contratacoes",), now=NOW)
    with replay._lock:  # the replay only appends: shrink it by hand
        del replay._records["contratacoes"][12:]
    replay.requests.clear()

    ingest_pncp_tail(engine, settings, client, endpoints=("contratacoes",), now=NOW)

    assert pages_asked(replay) == [3, 1]  # page 3 is gone (HTTP 204, no totals): page 1 tells
    assert stored_total(engine) == 12
