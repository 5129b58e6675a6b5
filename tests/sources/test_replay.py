from __future__ import annotations

from typing import Any

import httpx
import pytest

from cidadao.sources.replay import Fault, ReplayServer
from cidadao.sources.sample import sample_contratacoes


def _query(**changes: str) -> dict[str, str]:
    return {
        "dataInicial": "20250102",
        "dataFinal": "20250102",
        "codigoModalidadeContratacao": "6",
        "pagina": "1",
        "tamanhoPagina": "10",
        **changes,
    }


@pytest.fixture(scope="module")
def server() -> ReplayServer:
    return ReplayServer(sample_contratacoes())  # page() needs no running server


def test_envelope_and_last_page(server: ReplayServer) -> None:
    first = server.page("contratacoes", _query())
    last = server.page("contratacoes", _query(pagina="3"))
    assert first is not None
    assert last is not None
    assert {
        key: first[key] for key in ("totalRegistros", "totalPaginas", "numeroPagina", "paginasRestantes")
    } == {
        "totalRegistros": 28,
        "totalPaginas": 3,
        "numeroPagina": 1,
        "paginasRestantes": 2,
    }
    assert (len(first["data"]), len(last["data"]), last["paginasRestantes"]) == (10, 8, 0)
    assert all(
        record["dataPublicacaoPncp"].startswith("2025-01-02") for record in first["data"] + last["data"]
    )
    assert server.page("contratacoes", _query(pagina="4")) is None  # past the end: HTTP 204


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tamanhoPagina": "9"}, "tamanhoPagina"),
        ({"tamanhoPagina": "51"}, "tamanhoPagina"),
        ({"pagina": "0"}, "pagina"),
        ({"pagina": "um"}, "pagina"),
        ({"dataInicial": "2025-01-02"}, "dataInicial"),
        ({"codigoModalidadeContratacao": ""}, "codigoModalidadeContratacao"),
    ],
)
def test_bad_queries_are_refused_like_pncp(
    server: ReplayServer, changes: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        server.page("contratacoes", _query(**changes))


def test_contratos_accept_larger_pages(server: ReplayServer) -> None:
    assert server.page("contratos", _query(tamanhoPagina="500")) is None  # no contratos published here


def test_faults_are_served_in_order_and_per_endpoint() -> None:
    records: list[dict[str, Any]] = sample_contratacoes()
    with ReplayServer(records) as running:
        running.inject(Fault(status=503, endpoint="contratos"))
        running.throttle_next(1, retry_after="Thu, 01 Jan 2026 00:00:10 GMT", endpoint="contratacoes")
        url = f"{running.url}/v1/contratacoes/publicacao"
        throttled = httpx.get(url, params=_query())
        served = httpx.get(url, params=_query())
        unavailable = httpx.get(f"{running.url}/v1/contratos", params=_query(tamanhoPagina="500"))
        assert running.clear_faults() == 0
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "Thu, 01 Jan 2026 00:00:10 GMT")
    assert served.status_code == 200
    assert len(served.json()["data"]) == 10
    assert unavailable.status_code == 503
    assert [endpoint for endpoint, _ in running.requests] == ["contratacoes", "contratacoes", "contratos"]
