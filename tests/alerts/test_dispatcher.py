"""Retries, 429 handling, dead letters, SSRF refusals and concurrent dispatchers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import Engine, select
from tests.alerts.conftest import DISCORD_PATH, HOOK_PATH, AddFindings, Receiver, Reply, make_finding
from tests.alerts.helpers import alert_settings

from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import enqueue_alerts, outbox_counts
from cidadao.alerts.payload import utc
from cidadao.config import Settings
from cidadao.domain.records import Severity
from cidadao.store.db import engine_for, transaction
from cidadao.store.models import AlertOutboxRow

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)


def _findings(add_findings: AddFindings, count: int) -> list[int]:
    # Distinct buyers so that no grouping applies.
    return add_findings(
        *(
            make_finding(f"{10000000000000 + i:014d}-1-000001/2025", severity=Severity.CRITICAL)
            for i in range(count)
        )
    )


def _queue(engine: Engine, settings: Settings, ids: list[int]) -> None:
    with transaction(engine) as session:
        enqueue_alerts(session, ids, settings, now=NOW)


def _rows(engine: Engine) -> list[AlertOutboxRow]:
    with transaction(engine) as session:
        return list(session.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.id)))


def test_server_error_is_retried_with_backoff_then_delivered(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    _queue(engine, settings, _findings(add_findings, 1))
    receiver.script(HOOK_PATH, Reply(500, body=b"boom"))

    first = dispatch_due(engine, settings, now=NOW)
    assert (first.claimed, first.retried, first.delivered) == (1, 1, 0)
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 500: boom")
    assert row.claimed_until is None
    assert NOW + timedelta(seconds=15) <= utc(row.next_attempt_at) <= NOW + timedelta(seconds=30)
    assert dispatch_due(engine, settings, now=NOW + timedelta(seconds=10)).claimed == 0  # not due yet

    second = dispatch_due(engine, settings, now=NOW + timedelta(seconds=31))
    assert second.delivered == 1
    [row] = _rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)
    requests = receiver.at(HOOK_PATH)
    assert len(requests) == 2
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"] == row.idempotency_key


def test_429_retry_after_header_pauses_the_channel(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    _queue(engine, settings, _findings(add_findings, 3))
    receiver.script(HOOK_PATH, Reply(429, {"Retry-After": "120"}))

    stats = dispatch_due(engine, settings, now=NOW)
    assert (stats.claimed, stats.retried, stats.deferred, stats.delivered) == (3, 1, 2, 0)
    assert len(receiver.at(HOOK_PATH)) == 1  # the other two were not even tried
    rows = _rows(engine)
    assert [r.attempts for r in rows] == [1, 0, 0]
    for row in rows:
        assert NOW + timedelta(seconds=120) <= utc(row.next_attempt_at) <= NOW + timedelta(seconds=132)
    assert dispatch_due(engine, settings, now=NOW + timedelta(seconds=119)).claimed == 0
    assert dispatch_due(engine, settings, now=NOW + timedelta(seconds=133)).delivered == 3


def test_discord_rate_limit_body_is_honoured(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(DISCORD_PATH)])
    _queue(engine, settings, _findings(add_findings, 1))
    limited = orjson.dumps({"message": "You are being rate limited.", "retry_after": 7.5, "global": False})
    receiver.script(DISCORD_PATH, Reply(429, {"content-type": "application/json"}, limited))

    assert dispatch_due(engine, settings, now=NOW).retried == 1
    [row] = _rows(engine)
    assert NOW + timedelta(seconds=7.5) <= utc(row.next_attempt_at) <= NOW + timedelta(seconds=8.3)
    assert "429" in (row.last_error or "")


def test_dead_letter_after_the_last_attempt(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)], alert_max_attempts=3)
    _queue(engine, settings, _findings(add_findings, 1))
    receiver.script(HOOK_PATH, *[Reply(503)] * 3)

    outcomes = [dispatch_due(engine, settings, now=NOW + timedelta(days=day)) for day in range(4)]
    assert [(s.retried, s.dead) for s in outcomes] == [(1, 0), (1, 0), (0, 1), (0, 0)]
    [row] = _rows(engine)
    assert (row.status, row.attempts) == ("dead", 3)
    assert (row.last_error or "").startswith("HTTP 503")
    assert outbox_counts(engine) == {"pending": 0, "held": 0, "delivered": 0, "dead": 1}
    assert len(receiver.at(HOOK_PATH)) == 3


def test_hung_receiver_times_out_and_is_retried(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)], alert_timeout_seconds=0.3)
    _queue(engine, settings, _findings(add_findings, 1))
    receiver.script(HOOK_PATH, Reply(200, delay=2.0))

    assert dispatch_due(engine, settings, now=NOW).retried == 1
    [row] = _rows(engine)
    assert row.last_error == "timeout after 0.3s"
    assert dispatch_due(engine, settings, now=NOW + timedelta(minutes=5)).delivered == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [(Reply(404), "HTTP 404"), (Reply(302, {"Location": "/elsewhere"}), "redirects are not followed")],
)
def test_permanent_failures_dead_letter_at_once(
    engine: Engine, receiver: Receiver, add_findings: AddFindings, reply: Reply, error: str
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    _queue(engine, settings, _findings(add_findings, 1))
    receiver.script(HOOK_PATH, reply)
    assert dispatch_due(engine, settings, now=NOW).dead == 1
    [row] = _rows(engine)
    assert error in (row.last_error or "")
    assert [r.path for r in receiver.requests] == [HOOK_PATH]  # the redirect was not followed


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://hooks.example.org/x", "only https"),
        ("https://127.0.0.1:{port}/x", "non-public address (127.0.0.1)"),
        ("https://169.254.169.254/latest/meta-data", "non-public address"),
        ("https://10.1.2.3/x", "non-public address"),
        ("https://[::1]:{port}/x", "non-public address"),
    ],
)
def test_internal_addresses_are_refused(
    engine: Engine, receiver: Receiver, add_findings: AddFindings, url: str, error: str
) -> None:
    settings = alert_settings(alert_webhooks=[url.format(port=receiver.port)], alert_allowed_hosts=[])
    _queue(engine, settings, _findings(add_findings, 1))
    assert dispatch_due(engine, settings, now=NOW).dead == 1
    [row] = _rows(engine)
    assert error in (row.last_error or "")
    assert receiver.requests == []


def test_secret_url_token_never_in_stored_error_or_logs(
    engine: Engine, receiver: Receiver, add_findings: AddFindings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(DISCORD_PATH)])
    _queue(engine, settings, _findings(add_findings, 1))
    receiver.script(DISCORD_PATH, Reply(500, body=f"no route to {receiver.url(DISCORD_PATH)}".encode()))
    dispatch_due(engine, settings, now=NOW)
    [row] = _rows(engine)
    assert row.last_error == "HTTP 500: no route to ***"
    captured = capsys.readouterr()
    assert "tok-en_SECRET" not in captured.out + captured.err


def test_removed_channel_dead_letters_with_reason(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    _queue(engine, alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)]), _findings(add_findings, 1))
    assert dispatch_due(engine, alert_settings(), now=NOW).dead == 1
    assert _rows(engine)[0].last_error == "channel no longer configured"


@pytest.mark.postgres
def test_concurrent_dispatchers_never_share_a_row(
    pg_url: str, receiver: Receiver, add_findings_pg: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    engine = engine_for(pg_url)
    _queue(engine, settings, _findings(add_findings_pg, 40))
    receiver.defaults[HOOK_PATH] = Reply(200, delay=0.01)
    results = []

    def work() -> None:
        results.append(dispatch_due(engine, settings, limit=100, now=NOW))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.delivered for r in results) == 40
    ids = [r.headers["webhook-id"] for r in receiver.at(HOOK_PATH)]
    assert len(ids) == len(set(ids)) == 40
    assert sum(1 for r in results if r.delivered) >= 2  # the work was really shared
