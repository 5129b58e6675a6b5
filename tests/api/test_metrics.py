from __future__ import annotations

import re
from typing import Any

from sqlalchemy import insert

from cidadao.store.db import engine_for
from cidadao.store.models import AlertOutboxRow, IngestionRunRow

from .conftest import TestClient


def _value(text: str, pattern: str) -> float:
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, pattern
    return float(match.group(1))


def test_metrics_expose_latency_findings_runs_and_outbox(client: TestClient, settings: Any) -> None:
    with engine_for(settings.effective_database_url).begin() as connection:
        connection.execute(
            insert(AlertOutboxRow),
            [
                {
                    "idempotency_key": f"k{n}",
                    "finding_id": n,
                    "channel": "email",
                    "payload": {},
                    "status": status,
                }
                for n, status in ((1, "pending"), (2, "dead"), (3, "dead"))
            ],
        )
        connection.execute(insert(IngestionRunRow), [{"source": "pncp", "status": "failed"}])
    for finding_id in (1, 2, 3):
        client.get(f"/v1/findings/{finding_id}")
    client.get("/v1/nothing-here")
    response = client.get("/metrics", headers={"X-Request-ID": "scrape-1"})
    text = response.text
    assert response.headers["x-request-id"] == "scrape-1"
    latency = r'cidadao_http_request_duration_seconds_count\{method="GET",route="/v1/findings/\{id\}",'
    latency += r'status="200"\}'
    assert _value(text, latency) >= 3
    assert 'route="<unmatched>"' in text
    assert "/v1/nothing-here" not in text
    assert _value(text, r'cidadao_findings\{rule="fracionamento",severity="low"\}') == 15
    assert _value(text, r'cidadao_runs\{kind="ingestion",name="pncp",status="failed"\}') == 1
    assert _value(text, r'cidadao_outbox\{status="pending"\}') == 1
    assert _value(text, "cidadao_outbox_dead_letters") == 2
    assert "cidadao_cache_hit_ratio" in text


def test_request_id_is_generated_or_kept(client: TestClient) -> None:
    generated = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    unsafe = client.get("/health", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"]
    assert unsafe != "a b\tc"
