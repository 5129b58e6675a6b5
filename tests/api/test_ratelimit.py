from __future__ import annotations

import uuid
from typing import Any

from cidadao.api.app import create_app

from .conftest import TestClient, make_settings


def test_per_ip_limit_answers_429_with_retry_after(sqlite_url: str, seeded: Any) -> None:
    with TestClient(create_app(make_settings(sqlite_url, rate_limit_per_minute=3))) as client:
        assert [client.get("/v1/rules").status_code for _ in range(3)] == [200, 200, 200]
        limited = client.get("/v1/findings")
        assert limited.status_code == 429
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        assert limited.headers["x-request-id"]
        # Probes and metrics are never limited; a caller with a credential has its own budget.
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        key = {"X-API-Key": f"cid_{uuid.uuid4().hex[:8]}_x"}
        assert client.get("/v1/rules", headers=key).status_code == 401
        assert client.get("/v1/rules", headers=key).status_code == 401
        assert client.get("/v1/rules", headers=key).status_code == 401
        assert client.get("/v1/rules", headers=key).status_code == 429


def test_redis_limit_is_shared_between_processes(sqlite_url: str, seeded: Any) -> None:
    settings = make_settings(sqlite_url, rate_limit_per_minute=4, redis_url="redis://127.0.0.1:6379/0")
    # A credential of its own keeps this test's bucket apart from any other run in the same minute.
    headers = {"Authorization": f"Bearer {uuid.uuid4().hex}"}
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        codes = [client.get("/v1/rules", headers=headers).status_code for client in (first, second) * 3]
    assert codes == [401, 401, 401, 401, 429, 429]


def test_unreachable_redis_lets_requests_through(sqlite_url: str, seeded: Any) -> None:
    settings = make_settings(sqlite_url, rate_limit_per_minute=1, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        assert [client.get("/v1/rules").status_code for _ in range(3)] == [200, 200, 200]


def test_cors_origins_come_from_settings(sqlite_url: str, seeded: Any) -> None:
    settings = make_settings(sqlite_url, cors_origins="https://painel.example.org")
    preflight = {"Origin": "https://painel.example.org", "Access-Control-Request-Method": "PATCH"}
    with TestClient(create_app(settings)) as client:
        allowed = client.options("/v1/findings/1", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://painel.example.org"
        other = client.get("/v1/rules", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        assert "access-control-allow-origin" not in client.get("/v1/rules", headers=preflight).headers
