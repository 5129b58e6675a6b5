from __future__ import annotations

import importlib
from typing import Any

import pytest
from sqlalchemy import select

from cidadao.config import load_settings
from cidadao.store.db import engine_for
from cidadao.store.models import InvestigationRow

from .conftest import TestClient

REDIS_DB = 11  # a database number of its own on the shared Redis


def _use_broker(monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    """The worker's Celery app, built on a broker of the test's choosing (real Redis, own db number)."""
    worker = importlib.import_module("cidadao.worker.app")
    celery_app = worker.create_celery(load_settings(redis_url=url))
    monkeypatch.setattr(worker, "celery_app", celery_app)
    return celery_app


@pytest.fixture
def auth(writer_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {writer_token}"}


def test_investigation_is_stored_then_enqueued_on_the_critical_queue(
    client: TestClient, auth: dict[str, str], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    celery_app = _use_broker(monkeypatch, f"redis://127.0.0.1:6379/{REDIS_DB}")
    with celery_app.connection_for_write() as connection:
        connection.SimpleQueue("critical").clear()
    response = client.post(
        "/v1/investigations", json={"kind": "buyer", "cnpj": "00394460000141"}, headers=auth
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["enqueued"] is True
    assert body["target"] == {"cnpj": "00394460000141"}
    assert body["requested_by"] == "user:editor@example.org"
    with engine_for(settings.effective_database_url).connect() as connection:
        row = connection.execute(select(InvestigationRow).where(InvestigationRow.id == body["id"])).one()
    assert row.target_kind == "buyer"
    assert row.status == "queued"
    with celery_app.connection_for_read() as connection:
        queue = connection.SimpleQueue("critical", no_ack=True)
        message = queue.get(timeout=10)
        queue.close()
    assert message.headers["task"] == "cidadao.investigate"
    assert message.payload[0] == [body["id"]]
    polled = client.get(body["poll"]).json()
    assert polled["id"] == body["id"]
    assert polled["status"] == "queued"
    assert polled["enqueued"] is None


def test_broker_down_leaves_the_row_queued_and_says_so(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_broker(monkeypatch, "redis://127.0.0.1:1/0")
    body = client.post(
        "/v1/investigations",
        json={"kind": "window", "start": "2025-01-01", "end": "2025-01-31"},
        headers=auth,
    ).json()
    assert body["enqueued"] is False
    assert body["status"] == "queued"
    assert body["target"] == {"start": "2025-01-01", "end": "2025-01-31"}


def test_invalid_requests_name_the_field(client: TestClient, auth: dict[str, str]) -> None:
    cases = [
        ({"kind": "buyer"}, "cnpj"),
        ({"kind": "supplier"}, "supplier_id"),
        ({"kind": "window", "start": "2025-01-01"}, "end"),
        ({"kind": "window", "start": "2025-02-01", "end": "2025-01-01"}, "end"),
        ({"kind": "planet"}, "kind"),
        ({"kind": "buyer", "cnpj": "123"}, "cnpj"),
    ]
    for payload, field in cases:
        response = client.post("/v1/investigations", json=payload, headers=auth)
        assert response.status_code == 422, payload
        assert field in {detail["param"] for detail in response.json()["details"]}, (payload, response.json())
    assert client.get("/v1/investigations/999").status_code == 404
