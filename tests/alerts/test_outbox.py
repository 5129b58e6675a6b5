"""Policy at enqueue: severity per channel, grouping per buyer, quiet hours, one alert per finding ever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from tests.alerts.conftest import HOOK_PATH, AddFindings, Receiver, add_record, make_finding
from tests.alerts.helpers import alert_settings

from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import enqueue_alerts
from cidadao.alerts.payload import utc
from cidadao.config import Settings, SettingsError, load_settings
from cidadao.domain.records import Finding, Severity
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow
from cidadao.store.repositories import save_findings

BUYER_A = "11111111000111"
BUYER_B = "22222222000122"
NOON = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # 12:00 in Brasília


def _record(buyer: str, sequence: int) -> str:
    return f"{buyer}-1-{sequence:06d}/2025"


def _enqueue(engine: Engine, settings: Settings, ids: list[int], now: datetime = NOON) -> int:
    with transaction(engine) as session:
        return enqueue_alerts(session, ids, settings, now=now)


def _rows(engine: Engine) -> list[AlertOutboxRow]:
    with transaction(engine) as session:
        return list(session.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.id)))


def test_minimum_severity_per_channel(engine: Engine, receiver: Receiver, add_findings: AddFindings) -> None:
    settings = alert_settings(
        alert_webhooks=[receiver.url(HOOK_PATH)],
        alert_file="alerts.jsonl",
        alert_channel_min_severity=["webhook=critical"],
    )
    ids = add_findings(*(make_finding(_record(BUYER_A, 1), rule=s.value, severity=s) for s in Severity))
    assert _enqueue(engine, settings, ids) == 3
    by_channel: dict[str, list[str]] = {}
    for row in _rows(engine):
        by_channel.setdefault(row.channel.split(":")[0], []).append(
            row.payload["data"]["finding"]["severity"]
        )
    assert by_channel == {"file": ["high", "critical"], "webhook": ["critical"]}


def test_many_findings_of_one_buyer_become_one_grouped_alert(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)], alert_group_threshold=3)
    records = [_record(BUYER_A, i) for i in range(1, 5)] + [_record(BUYER_B, i) for i in range(1, 4)]
    for record in records:
        add_record(engine, record)
    findings = [make_finding(r, score=0.5 + i / 10) for i, r in enumerate(records[:4], start=1)]
    findings += [make_finding(r) for r in records[4:]]  # exactly the threshold for B: not grouped
    ids = add_findings(*findings)
    assert _enqueue(engine, settings, ids) == 4

    rows = _rows(engine)
    groups = [r for r in rows if r.kind == "group"]
    assert len(groups) == 1
    group = groups[0]
    assert group.finding_id is None
    data = group.payload["data"]
    assert data["count"] == 4
    assert data["finding_ids"] == sorted(ids[:4])
    assert data["buyer"]["cnpj"] == BUYER_A
    assert [f["score"] for f in data["findings"]] == [0.9, 0.8, 0.7, 0.6]
    assert sorted(r.finding_id for r in rows if r.kind == "finding") == sorted(ids[4:])

    assert _enqueue(engine, settings, ids) == 0  # same call again: same deterministic keys
    assert dispatch_due(engine, settings, now=NOON).delivered == 4
    grouped = [r.json() for r in receiver.at(HOOK_PATH) if r.json()["type"] == "findings.grouped"]
    assert len(grouped) == 1


def test_two_monitor_runs_over_the_same_data_alert_once(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    add_record(engine, _record(BUYER_A, 1))
    findings: list[Finding] = [make_finding(_record(BUYER_A, 1)), make_finding(_record(BUYER_B, 1))]

    def monitor_run() -> int:
        # What the monitor does: findings and their alerts in one transaction.
        with transaction(engine) as session:
            ids = save_findings(session, findings, None)
            return enqueue_alerts(session, ids, settings, now=NOON)

    assert monitor_run() == 2
    assert dispatch_due(engine, settings, now=NOON).delivered == 2
    assert monitor_run() == 0
    assert dispatch_due(engine, settings, now=NOON + timedelta(hours=1)).claimed == 0
    assert len(receiver.at(HOOK_PATH)) == 2


def test_alert_rolls_back_with_its_finding(engine: Engine, receiver: Receiver) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    queued = []

    def crashing_monitor_run() -> None:
        with transaction(engine) as session:
            ids = save_findings(session, [make_finding(_record(BUYER_A, 1))], None)
            queued.append(enqueue_alerts(session, ids, settings))
            raise RuntimeError("monitor crashed before commit")

    with pytest.raises(RuntimeError):
        crashing_monitor_run()
    assert queued == [1]
    assert _rows(engine) == []


def test_quiet_hours_hold_non_critical_until_morning(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)], alert_quiet_hours="22-7")
    night = datetime(2026, 11, 27, 2, 30, tzinfo=UTC)  # 23:30 in Brasília
    morning = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # 07:00 in Brasília
    ids = add_findings(
        make_finding(_record(BUYER_A, 1), severity=Severity.HIGH),
        make_finding(_record(BUYER_B, 1), severity=Severity.CRITICAL),
    )
    _enqueue(engine, settings, ids, now=night)
    held, urgent = _rows(engine)
    assert (held.status, utc(held.next_attempt_at)) == ("held", morning)
    assert (urgent.status, utc(urgent.next_attempt_at)) == ("pending", night)

    assert dispatch_due(engine, settings, now=night).delivered == 1
    assert dispatch_due(engine, settings, now=morning - timedelta(minutes=1)).claimed == 0
    assert dispatch_due(engine, settings, now=morning).delivered == 1
    severities = [r.json()["data"]["finding"]["severity"] for r in receiver.at(HOOK_PATH)]
    assert severities == ["critical", "high"]


def test_outside_quiet_hours_nothing_is_held(engine: Engine, add_findings: AddFindings) -> None:
    settings = alert_settings(alert_file="alerts.jsonl", alert_quiet_hours="22-7")
    ids = add_findings(make_finding(_record(BUYER_A, 1)))
    _enqueue(engine, settings, ids, now=NOON)
    assert [r.status for r in _rows(engine)] == ["pending"]


def test_no_channel_no_rows(engine: Engine, add_findings: AddFindings) -> None:
    ids = add_findings(make_finding(_record(BUYER_A, 1), severity=Severity.CRITICAL))
    assert _enqueue(engine, load_settings(), ids) == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_EMAILS": "a@example.org"}, "SMTP_HOST is not"),
        ({"ALERT_EMAILS": "a@example.org;b"}, "ALERT_EMAILS"),
        ({"ALERT_WEBHOOKS": "discord.com/api/webhooks/1/x"}, "ALERT_WEBHOOKS"),
        ({"ALERT_CHANNEL_MIN_SEVERITY": "email=urgent"}, "ALERT_CHANNEL_MIN_SEVERITY"),
    ],
)
def test_bad_alert_configuration_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
