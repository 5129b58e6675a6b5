from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from cidadao.config import load_settings
from cidadao.sources.pncp import (
    Page,
    PncpClient,
    PncpError,
    RateLimiter,
    Window,
    retry_after_seconds,
    split_window,
)
from cidadao.sources.replay import ReplayServer
from cidadao.sources.sample import sample_contratacoes, sample_contratos

YEAR = (date(2024, 2, 20), date(2025, 1, 20))


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer([*sample_contratacoes(), *sample_contratos()]) as running:
        yield running


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def _client(server: ReplayServer, fake: FakeTime, **overrides: Any) -> PncpClient:
    settings = load_settings(
        pncp_base_url=server.url,
        pncp_page_size=overrides.pop("page_size", 10),
        pncp_window_days=overrides.pop("window_days", 365),
        pncp_max_retries=overrides.pop("max_retries", 6),
        pncp_timeout_seconds=overrides.pop("timeout", 5.0),
    )
    return PncpClient(settings, sleep=fake.sleep, clock=fake.clock, **overrides)


def _published(records: list[dict[str, Any]], start: date, end: date) -> list[str]:
    return [
        record["numeroControlePNCP"]
        for record in sorted(records, key=lambda item: item["dataPublicacaoPncp"])
        if start <= date.fromisoformat(record["dataPublicacaoPncp"][:10]) <= end
    ]


def test_pages_through_all_contratacoes_with_positions(server: ReplayServer, fake: FakeTime) -> None:
    with _client(server, fake) as client:
        pages = list(client.iter_pages("contratacoes", *YEAR, modalidade=6))
    assert [page.number for page in pages] == list(range(1, 10))
    assert {(page.total_pages, page.total_records, page.modalidade) for page in pages} == {(9, 89, 6)}
    assert pages[0].window == Window(*YEAR)
    numbers = [record["numeroControlePNCP"] for page in pages for record in page.records]
    assert numbers == _published(sample_contratacoes(), *YEAR)
    number, records = pages[-1]  # pages unpack as (number, records) for checkpointing callers
    assert (number, len(records)) == (9, 9)


def test_contratos_endpoint_and_modalidade_filter(server: ReplayServer, fake: FakeTime) -> None:
    with _client(server, fake, page_size=500) as client:
        contratos = [r for page in client.iter_pages("contratos", *YEAR) for r in page.records]
        dispensas = list(client.iter_pages("contratacoes", *YEAR, modalidade=8))
    assert len(contratos) == 49
    assert all(record["numeroControlePncpCompra"] for record in contratos)
    assert dispensas == []  # the real sample holds only pregões (modalidade 6)


def test_windows_are_split_and_each_request_stays_inside_one(server: ReplayServer, fake: FakeTime) -> None:
    start, end = date(2024, 11, 20), date(2025, 1, 2)
    before = len(server.requests)
    with _client(server, fake, window_days=7) as client:
        pages = list(client.iter_pages("contratacoes", start, end, modalidade=6))
    windows = {(query["dataInicial"], query["dataFinal"]) for _, query in server.requests[before:]}
    assert min(windows) == ("20241120", "20241126")
    assert max(windows) == ("20250101", "20250102")
    assert len(windows) == 7
    spans = [datetime.strptime(b, "%Y%m%d") - datetime.strptime(a, "%Y%m%d") for a, b in windows]
    assert max(span.days for span in spans) == 6
    numbers = [record["numeroControlePNCP"] for page in pages for record in page.records]
    assert numbers == _published(sample_contratacoes(), start, end)


def test_split_window() -> None:
    windows = split_window(date(2025, 1, 1), date(2025, 1, 10), 4)
    assert windows == [
        Window(date(2025, 1, 1), date(2025, 1, 4)),
        Window(date(2025, 1, 5), date(2025, 1, 8)),
        Window(date(2025, 1, 9), date(2025, 1, 10)),
    ]
    assert split_window(date(2025, 1, 2), date(2025, 1, 1), 1) == []


def test_http_204_is_an_empty_window(server: ReplayServer, fake: FakeTime) -> None:
    with _client(server, fake) as client:
        page = client.fetch_page("contratacoes", Window(date(2023, 1, 1), date(2023, 1, 2)), 1, 6)
        assert list(client.iter_pages("contratacoes", date(2023, 1, 1), date(2023, 1, 2), 6)) == []
    assert (page.records, page.total_pages) == ([], 0)


def test_resumes_at_a_given_page(server: ReplayServer, fake: FakeTime) -> None:
    with _client(server, fake) as client:
        pages = list(client.iter_pages("contratacoes", *YEAR, modalidade=6, first_page=4))
    assert [page.number for page in pages] == list(range(4, 10))
    numbers = [record["numeroControlePNCP"] for page in pages for record in page.records]
    assert numbers == _published(sample_contratacoes(), *YEAR)[30:]


def test_server_errors_are_retried_with_growing_backoff(server: ReplayServer, fake: FakeTime) -> None:
    server.fail_next(3, status=503, endpoint="contratos")
    with _client(server, fake, page_size=500) as client:
        pages = list(client.iter_pages("contratos", *YEAR))
    assert sum(len(page.records) for page in pages) == 49
    backoffs = [seconds for seconds in fake.sleeps if seconds >= 1]
    assert len(backoffs) == 3
    assert 1 <= backoffs[0] <= 2 <= backoffs[1] <= 3
    assert 4 <= backoffs[2] <= 5


def test_gives_up_after_max_retries(server: ReplayServer, fake: FakeTime) -> None:
    before = len(server.requests)
    server.fail_next(10, status=500, endpoint="contratos")
    with _client(server, fake, max_retries=2) as client, pytest.raises(PncpError, match="after 3 attempts"):
        list(client.iter_pages("contratos", *YEAR))
    assert len(server.requests) - before == 3
    assert server.clear_faults() == 7


def test_429_honours_retry_after_seconds(server: ReplayServer, fake: FakeTime) -> None:
    server.throttle_next(2, retry_after="7", endpoint="contratos")
    with _client(server, fake, page_size=500) as client:
        pages = list(client.iter_pages("contratos", *YEAR))
    assert len(pages[0].records) == 49
    assert fake.sleeps.count(7.0) == 2


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 2, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 02 Jan 2025 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Thu, 02 Jan 2025 11:00:00 GMT", now) == 0
    assert retry_after_seconds("12", now) == 12
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_timeouts_are_retried(server: ReplayServer, fake: FakeTime) -> None:
    server.slow_next(1.5, endpoint="contratos")
    with _client(server, fake, page_size=500, timeout=0.3) as client:
        pages = list(client.iter_pages("contratos", *YEAR))
    assert len(pages[0].records) == 49
    assert any(seconds >= 1 for seconds in fake.sleeps)


def test_client_errors_are_not_retried(server: ReplayServer, fake: FakeTime) -> None:
    before = len(server.requests)
    server.fail_next(1, status=404, endpoint="contratos")
    with _client(server, fake) as client, pytest.raises(PncpError, match="HTTP 404"):
        list(client.iter_pages("contratos", *YEAR))
    assert len(server.requests) - before == 1


def test_connection_errors_and_truncated_bodies_are_retried(fake: FakeTime) -> None:
    calls: list[str] = []
    body = (
        b'{"data": [{"numeroControlePNCP": "x"}], "totalRegistros": 1, "totalPaginas": 1, "numeroPagina": 1}'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(200, content=body[:20])
        return httpx.Response(200, content=body)

    settings = load_settings(pncp_base_url="http://pncp.test/api/consulta")
    with PncpClient(
        settings, transport=httpx.MockTransport(handler), sleep=fake.sleep, clock=fake.clock
    ) as client:
        page = client.fetch_page("contratos", Window(date(2025, 1, 1), date(2025, 1, 1)), 1)
    assert page.records == [{"numeroControlePNCP": "x"}]
    assert len(calls) == 3
    assert calls[0].startswith("http://pncp.test/api/consulta/v1/contratos?dataInicial=20250101")


def test_client_is_rate_limited(server: ReplayServer, fake: FakeTime) -> None:
    settings = load_settings(
        pncp_base_url=server.url, pncp_requests_per_second=2, pncp_page_size=10, pncp_window_days=365
    )
    with PncpClient(settings, sleep=fake.sleep, clock=fake.clock) as client:
        pages = list(client.iter_pages("contratacoes", *YEAR, modalidade=6))
    assert len(pages) == 9
    assert fake.sleeps == [0.5] * 8  # 9 requests at 2/s: the first is free


def test_rate_limiter_token_bucket(fake: FakeTime) -> None:
    limiter = RateLimiter(4, burst=2, clock=fake.clock, sleep=fake.sleep)
    waits = [limiter.acquire() for _ in range(6)]
    assert waits == [0, 0, 0.25, 0.25, 0.25, 0.25]
    fake.now += 10  # an idle spell refills only up to the burst
    assert [limiter.acquire() for _ in range(3)] == [0, 0, 0.25]


def test_rate_limiter_is_thread_safe() -> None:
    limiter = RateLimiter(100)
    started = time.monotonic()

    def work() -> None:
        for _ in range(10):
            limiter.acquire()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 39 / 100 * 0.95


def test_published_records_appear_at_runtime(fake: FakeTime) -> None:
    record = {**sample_contratacoes()[0], "numeroControlePNCP": "06140404000167-1-000999/2026"}
    record.update(modalidadeId=8, dataPublicacaoPncp="2026-03-01T10:00:00")
    with ReplayServer() as server, _client(server, fake) as client:
        assert list(client.iter_pages("contratacoes", date(2026, 3, 1), date(2026, 3, 1), 8)) == []
        assert server.publish([record]) == 1
        pages = list(client.iter_pages("contratacoes", date(2026, 3, 1), date(2026, 3, 1), 8))
    assert [page.records for page in pages] == [[record]]


def test_bad_arguments_are_refused(server: ReplayServer, fake: FakeTime) -> None:
    with _client(server, fake) as client:
        with pytest.raises(ValueError, match="modalidade"):
            list(client.iter_pages("contratacoes", *YEAR))
        with pytest.raises(ValueError, match="unknown PNCP endpoint"):
            list(client.iter_pages("atas", *YEAR))
    response = httpx.get(f"{server.url}/v1/contratos", params={"dataInicial": "2025-01-01", "pagina": 1})
    assert response.status_code == 400
    assert "dataInicial" in response.json()["message"]


def test_page_repr_and_type() -> None:
    page = Page(
        2, [{}], endpoint="contratos", modalidade=None, window=Window(*YEAR), total_pages=3, total_records=21
    )
    assert isinstance(page, tuple)
    assert "2/3" in repr(page)
