"""The hot paths answer exactly as the general ones: the middleware's direct dispatch against FastAPI's
routing, and on PostgreSQL the psycopg queries against SQLAlchemy's."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from cidadao.api import findings, pgfast
from cidadao.api.app import create_app
from cidadao.api.auth import issue_token
from cidadao.api.fastpath import FastRoutes
from cidadao.store.db import engine_for, upgrade
from cidadao.store.models import FindingEventRow

from .conftest import make_settings, seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

URLS = [
    "/health",
    "/health/live",
    "/v1/findings",
    "/v1/findings?severity=high",
    "/v1/findings?severity=high&severity=low&rule=fracionamento&rule=valor_atipico&limit=3",
    "/v1/findings?sort=-score&limit=4",
    "/v1/findings?sort=score&limit=4&uf=sp",
    "/v1/findings?date_from=2025-03-01&date_to=2025-03-02&min_value=2000",
    "/v1/findings?buyer_cnpj=00394460000141&supplier=11222333000181&status=new",
    "/v1/findings?format=csv&limit=5",
    "/v1/findings?limit=0",
    "/v1/findings?severity=urgent",
    "/v1/findings?cursor=bm90LWEtY3Vyc29y",
    "/v1/findings?date_from=2025-02-30",
    "/v1/findings/1",
    "/v1/findings/7",
    "/v1/findings/999999",
    "/v1/findings/0",
    "/v1/findings/007",
    "/v1/findings/abc",
    "/v1/findings/99999999999999999999",
]


def _answers(client: TestClient, headers: dict[str, str] | None = None) -> list[tuple[Any, ...]]:
    answers = []
    for url in URLS:
        response = client.get(url, headers=headers)
        answers.append((url, response.status_code, response.headers.get("content-type"), response.content))
        cursor = response.headers.get("x-next-cursor")
        if response.status_code == 200 and url.startswith("/v1/findings?") and "csv" not in url:
            cursor = response.json()["next_cursor"]
        if cursor:  # the second page through the cursor too
            page = client.get(f"{url}&cursor={cursor}" if "?" in url else f"{url}?cursor={cursor}")
            answers.append((url, "page 2", page.status_code, page.content))
    return answers


def _with_event(url: str) -> None:
    with engine_for(url).begin() as connection:
        connection.execute(
            insert(FindingEventRow).values(
                finding_id=7, actor="user:a", from_status="new", to_status="confirmed", note="ok"
            )
        )


def test_direct_dispatch_answers_like_fastapi_routing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(sqlite_url)
    seed(engine_for(sqlite_url))
    _with_event(sqlite_url)
    settings = make_settings(sqlite_url, api_reads_public=False)
    token = issue_token(settings, "leitor@example.org", ["read"])
    results = []
    for routed in (False, True):
        with monkeypatch.context() as patch:
            if routed:
                patch.setattr(FastRoutes, "match", lambda self, scope: None)
            with TestClient(create_app(settings)) as client:
                results.append(
                    (
                        _answers(client, {"Authorization": f"Bearer {token}"}),
                        _answers(client),  # 401 everywhere but the probes
                        _answers(client, {"Authorization": "Bearer not-a-token"}),
                    )
                )
    assert results[0] == results[1]


@pytest.fixture
def pg_seeded(pg_url: str) -> str:
    upgrade(pg_url)
    seed(engine_for(pg_url))
    _with_event(pg_url)
    return pg_url


@pytest.mark.postgres
def test_psycopg_queries_answer_like_sqlalchemy(pg_seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(pg_seeded)
    results = []
    for general in (False, True):
        with monkeypatch.context() as patch:
            if general:
                patch.setattr(pgfast, "enabled", lambda engine: False)
            with TestClient(create_app(settings)) as client:
                results.append(_answers(client))
    assert results[0] == results[1]
    statuses = [answer[1] for answer in results[0] if answer[1] != "page 2"]
    assert statuses.count(200) >= 12  # the comparison covered real pages, not only errors


@pytest.mark.postgres
def test_psycopg_driver_errors_answer_503(pg_seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch, TestClient(create_app(make_settings(pg_seeded))) as client:
        patch.setattr(psycopg.Cursor, "execute", broken)

        async def broken_async(*args: Any, **kwargs: Any) -> Any:
            broken(*args, **kwargs)

        patch.setattr(psycopg.AsyncCursor, "execute", broken_async)
        for url in ("/v1/findings?severity=high", "/v1/findings/1"):
            response = client.get(url)
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "unavailable"


def test_list_cache_refresh_is_one_query_per_key(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests arriving while an expired page is refreshed wait for that answer: one query, not one each;
    a failed refresh leaves each waiter to answer on its own."""
    upgrade(sqlite_url)
    seed(engine_for(sqlite_url))
    app = create_app(make_settings(sqlite_url, api_list_cache_seconds=30))
    calls: list[bytes] = []
    real = findings._list_response

    async def slow(request: Any, engine: Any) -> Any:
        calls.append(request.scope["query_string"])
        await asyncio.sleep(0.05)
        return await real(request, engine)

    monkeypatch.setattr(findings, "_list_response", slow)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            urls = ["/v1/findings?limit=2"] * 5 + ["/v1/findings?limit=0"] * 3
            return await asyncio.gather(*(client.get(url) for url in urls))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 5 + [422] * 3
    assert len({r.content for r in responses[:5]}) == 1
    assert calls.count(b"limit=2") == 1  # one refresh served all five
    assert calls.count(b"limit=0") == 3  # the leader failed: the two waiters tried on their own
    assert app.state.page_cache.pending == {}
