from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from tests.monitor.test_ingest import raw_contratacao

from cidadao.api.app import create_app
from cidadao.api.auth import issue_token
from cidadao.config import Settings
from cidadao.monitor.ingest import ingest_file
from cidadao.store.db import engine_for
from cidadao.store.models import FindingEventRow, FindingRow, RecordRow

from .conftest import SEVERITIES, TestClient, finding_row, make_settings, record_row, seed


def _all_pages(client: TestClient, query: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url = f"/v1/findings?{query}&limit={limit}"
    while True:
        page = client.get(url).json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        url = f"/v1/findings?{query}&limit={limit}&cursor={page['next_cursor']}"


def test_list_is_newest_first_and_filters_combine(client: TestClient, seeded: list[dict[str, Any]]) -> None:
    body = client.get("/v1/findings", params={"limit": 5}).json()
    assert [item["id"] for item in body["items"]] == [60, 59, 58, 57, 56]
    high_sp = client.get("/v1/findings", params={"severity": "high", "uf": "sp", "limit": 100}).json()[
        "items"
    ]
    expected = [f for f in seeded if f["severity"] == "high" and f["uf"] == "SP"]
    assert len(high_sp) == len(expected) > 0
    assert all(item["severity"] == "high" and item["uf"] == "SP" for item in high_sp)
    several = client.get("/v1/findings?severity=high&severity=critical&limit=100").json()["items"]
    assert {item["severity"] for item in several} == {"high", "critical"}
    assert len(several) == 30
    by_buyer = client.get("/v1/findings", params={"buyer_cnpj": "00394460000141", "limit": 100}).json()
    assert len(by_buyer["items"]) == 20
    rich = client.get("/v1/findings", params={"min_value": 50000, "limit": 100}).json()["items"]
    assert rich
    assert all(item["value"] >= 50000 for item in rich)
    assert len(rich) == sum(1 for f in seeded if f["value"] >= 50000)
    march_2 = client.get("/v1/findings?date_from=2025-03-02&date_to=2025-03-02&limit=100").json()["items"]
    assert len(march_2) == 24
    assert client.get("/v1/findings?rule=fracionamento&supplier=11222333000181").json()["items"]


def test_score_sort_pages_cover_everything_once(client: TestClient, seeded: list[dict[str, Any]]) -> None:
    items = _all_pages(client, "sort=-score", 7)
    assert len(items) == len(seeded) == len({item["id"] for item in items})
    keys = [(item["score"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)


def test_pagination_is_stable_while_new_findings_arrive(
    settings: Settings, seeded: list[dict[str, Any]]
) -> None:
    engine = engine_for(settings.effective_database_url)
    rng = random.Random(3)
    with TestClient(create_app(settings)) as client:
        for sort in ("-id", "id", "-score"):
            before = {f["id"] for f in client.get("/v1/findings?limit=1000").json()["items"]}
            seen: list[int] = []
            everything = "&".join(f"severity={severity}" for severity in SEVERITIES)
            url = f"/v1/findings?sort={sort}&limit=9&{everything}"
            page = client.get(url).json()
            n = 1000 + len(before)
            while True:
                seen += [item["id"] for item in page["items"]]
                # Findings arrive between every two pages.
                with engine.begin() as connection:
                    record = record_row(n, purchase=f"P-{n}")
                    connection.execute(insert(RecordRow), [record])
                    connection.execute(insert(FindingRow), [finding_row(n, record, rng)])
                n += 1
                if not page["next_cursor"]:
                    break
                page = client.get(f"{url}&cursor={page['next_cursor']}").json()
            assert len(seen) == len(set(seen)), f"duplicates with sort={sort}"
            assert before <= set(seen), f"findings skipped with sort={sort}"


def test_cursor_cannot_be_replayed_with_other_filters_or_forged(client: TestClient) -> None:
    cursor = client.get("/v1/findings?severity=high&limit=2").json()["next_cursor"]
    other = client.get(f"/v1/findings?severity=low&limit=2&cursor={cursor}")
    assert other.status_code == 400
    assert other.json()["details"][0]["param"] == "cursor"
    assert client.get(f"/v1/findings?sort=-score&severity=high&cursor={cursor}").status_code == 400
    for forged in ("abc", "eyJzIjoiLWlkIn0", "W10", "!!!"):
        response = client.get(f"/v1/findings?cursor={forged}")
        assert response.status_code == 400, forged
        assert response.json()["error"] == "bad_request"


def test_bad_parameters_are_4xx_naming_the_parameter(client: TestClient) -> None:
    cases = {
        "limit=0": "limit",
        "limit=x": "limit",
        "severity=huge": "severity",
        "uf=SPX": "uf",
        "buyer_cnpj=123": "buyer_cnpj",
        "min_value=-1": "min_value",
        "min_value=nan": "min_value",
        "date_from=2025-13-01": "date_from",
        "date_from=2025-03-02&date_to=2025-03-01": "date_to",
        "sort=value": "sort",
        "format=xml": "format",
        "rule=drop%20table": "rule",
    }
    for query, param in cases.items():
        response = client.get(f"/v1/findings?{query}")
        assert 400 <= response.status_code < 500, query
        body = response.json()
        assert set(body) == {"error", "message", "details"}
        assert param in body["message"], (query, body)
        assert any(param in (detail["param"] or "") for detail in body["details"]), (query, body)
    assert client.get("/v1/findings/99999999999999999999").status_code == 422
    assert client.get("/v1/findings/12345").json()["error"] == "not_found"


def test_csv_export_for_spreadsheets(client: TestClient, settings: Settings) -> None:
    with engine_for(settings.effective_database_url).begin() as connection:
        connection.execute(
            FindingRow.__table__.update().where(FindingRow.id == 60).values(message="=HYPERLINK(1)")
        )
    response = client.get("/v1/findings?format=csv&limit=10")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 10
    assert rows[0]["id"] == "60"
    assert rows[0]["message"] == "'=HYPERLINK(1)"
    assert response.headers["x-next-cursor"]


def test_detail_has_evidence_events_and_related_records(client: TestClient) -> None:
    body = client.get("/v1/findings/1").json()
    assert body["evidence"] == {"value": 0, "limit": 59906.02}
    assert body["events"] == []
    flagged, *related = body["records"]
    assert flagged["control_number"] == body["record"]
    assert flagged["kind"] == "contrato"
    assert related[0]["control_number"] == flagged["purchase_control_number"]
    assert related[0]["link"].startswith("https://pncp.gov.br/app/editais/")


def test_triage_is_audited(client: TestClient, writer_token: str, settings: Settings) -> None:
    headers = {"Authorization": f"Bearer {writer_token}"}
    response = client.patch(
        "/v1/findings/5", json={"status": "confirmed", "note": "Conferido no PNCP."}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    client.patch("/v1/findings/5", json={"status": "dismissed"}, headers=headers)
    events = client.get("/v1/findings/5").json()["events"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        ("new", "confirmed"),
        ("confirmed", "dismissed"),
    ]
    assert events[0]["actor"] == "user:editor@example.org"
    assert events[0]["note"] == "Conferido no PNCP."
    with engine_for(settings.effective_database_url).connect() as connection:
        assert connection.execute(select(FindingEventRow.finding_id)).scalars().all() == [5, 5]
    assert client.get("/v1/findings?status=dismissed").json()["items"][0]["id"] == 5
    bad = client.patch("/v1/findings/5", json={"status": "solved"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["details"][0]["param"] == "status"
    assert client.patch("/v1/findings/424242", json={"status": "new"}, headers=headers).status_code == 404


def test_works_on_postgres(pg_url: str) -> None:
    from cidadao.store.db import upgrade

    upgrade(pg_url)
    seed(engine_for(pg_url), count=20)
    with TestClient(create_app(make_settings(pg_url))) as client:
        page = client.get("/v1/findings?limit=3&sort=-score").json()
        assert len(page["items"]) == 3
        rest = client.get(f"/v1/findings?limit=100&sort=-score&cursor={page['next_cursor']}").json()["items"]
        assert len(rest) == 17
        assert client.get("/v1/findings?date_from=2025-03-01&min_value=1000").json()["items"]
        assert client.get("/v1/stats").json()["total"] == 20
        assert client.get("/v1/buyers/00394460000141").json()["records"]["count"] > 0
        assert client.get("/v1/suppliers/11222333000181").json()["findings"]["count"] > 0
        detail = client.get("/v1/findings/3").json()
        assert detail["records"][0]["control_number"] == detail["record"]
        assert client.get(f"/v1/records/{detail['record']}").json()["findings"][0]["id"] == 3
        token = issue_token(client.app.state.settings, "pg", ["write"])
        patched = client.patch(
            "/v1/findings/3", json={"status": "false_positive"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert patched.json()["events"][0]["to_status"] == "false_positive"
        assert client.get("/v1/findings?status=false_positive").json()["items"][0]["id"] == 3
        assert client.get("/v1/runs").json() == {"items": []}
        assert "cidadao_findings{" in client.get("/metrics").text


def test_list_cache_reuses_answers_briefly_and_triage_clears_it(
    sqlite_url: str, seeded: list[dict[str, Any]], writer_token: str
) -> None:
    engine = engine_for(sqlite_url)
    with TestClient(create_app(make_settings(sqlite_url, api_list_cache_seconds=30))) as client:
        first = client.get("/v1/findings?limit=3").json()
        with engine.begin() as connection:
            record = record_row(500, purchase="P-500")
            connection.execute(insert(RecordRow), [record])
            connection.execute(insert(FindingRow), [finding_row(500, record, random.Random(1))])
        assert client.get("/v1/findings?limit=3").json() == first  # same answer within the TTL
        assert client.get("/v1/findings?limit=4").json()["items"][0]["id"] == 61  # other query: fresh
        headers = {"Authorization": f"Bearer {writer_token}"}
        client.patch("/v1/findings/60", json={"status": "confirmed"}, headers=headers)
        assert client.get("/v1/findings?limit=3").json()["items"][0]["id"] == 61
    with TestClient(create_app(make_settings(sqlite_url, api_list_cache_seconds=0))) as client:
        assert client.get("/v1/findings?limit=1").json()["items"][0]["id"] == 61


def test_extreme_dates_are_answered_not_crashed(client: TestClient) -> None:
    assert client.get("/v1/findings?date_to=9999-12-31").json()["items"]
    assert client.get("/v1/findings?date_from=0001-01-01&date_to=0001-01-01").json()["items"] == []
    assert client.get("/v1/findings?date_from=0000-01-01").status_code == 422


def test_record_page_serves_raw_json_with_numbers_beyond_64_bits(db_url: str, tmp_path: Path) -> None:
    # A JSON Lines record is stored as its line; the page must not depend on re-encoding a parsed value.
    record = {**raw_contratacao(1), "idExterno": 123456789012345678901234567890}
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert ingest_file(engine_for(db_url), path).ingested == 1

    with TestClient(create_app(make_settings(db_url))) as client:
        answer = client.get(f"/v1/records/{record['numeroControlePNCP']}")

    assert answer.status_code == 200, answer.text
    assert float(answer.json()["raw"]["idExterno"]) == 1.2345678901234568e29
