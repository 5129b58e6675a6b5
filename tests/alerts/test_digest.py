"""The digest covers exactly [now - period, now), once per window, on every channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from tests.alerts.conftest import (
    DISCORD_PATH,
    AddFindings,
    Receiver,
    Smtp,
    add_record,
    findings_adder,
    make_finding,
)
from tests.alerts.helpers import alert_settings, assert_valid_discord

from cidadao.alerts.digest import send_critical_anomalies_summary
from cidadao.alerts.dispatcher import dispatch_due
from cidadao.domain.records import Severity
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.models import AlertOutboxRow, FindingRow

END = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
START = END - timedelta(hours=24)


def _at(engine: Engine, finding_id: int, created_at: datetime) -> None:
    with transaction(engine) as session:
        session.execute(update(FindingRow).where(FindingRow.id == finding_id).values(created_at=created_at))


def test_digest_counts_exactly_the_period(
    engine: Engine, receiver: Receiver, smtp_server: Smtp, add_findings: AddFindings
) -> None:
    settings = alert_settings(
        alert_webhooks=[receiver.url(DISCORD_PATH)],
        alert_emails=["editor@example.org"],
        smtp_host="localhost",
        smtp_port=smtp_server.port,
    )
    moments = {
        "before": START - timedelta(seconds=1),
        "at_start": START,
        "inside_sp": START + timedelta(hours=5),
        "just_before_end": END - timedelta(microseconds=1),
        "at_end": END,
    }
    specs = {
        "before": ("11111111000111", "SP", Severity.CRITICAL, 0.99),
        "at_start": ("22222222000122", "MG", Severity.HIGH, 0.70),
        "inside_sp": ("33333333000133", "SP", Severity.MEDIUM, 0.90),
        "just_before_end": ("44444444000144", "SP", Severity.CRITICAL, 0.95),
        "at_end": ("55555555000155", "RJ", Severity.CRITICAL, 0.98),
    }
    ids: dict[str, int] = {}
    for name, (cnpj, uf, severity, score) in specs.items():
        record = f"{cnpj}-1-000001/2025"
        add_record(engine, record, uf=uf)
        [ids[name]] = add_findings(
            make_finding(record, rule=f"rule_{uf.lower()}", severity=severity, score=score)
        )
        _at(engine, ids[name], moments[name])

    summary = send_critical_anomalies_summary(engine, settings, period_hours=24, now=END)
    assert summary["total"] == 3
    assert [f["id"] for f in summary["top"]] == [ids["just_before_end"], ids["inside_sp"], ids["at_start"]]
    assert summary["by_severity"] == {"critical": 1, "high": 1, "medium": 1}
    assert summary["by_rule"] == {"rule_sp": 2, "rule_mg": 1}
    assert summary["by_uf"] == {"SP": 2, "MG": 1}
    assert summary["top"][0]["link"] == "https://pncp.gov.br/app/editais/44444444000144/2025/1"
    assert summary["enqueued"] == 2

    again = send_critical_anomalies_summary(engine, settings, period_hours=24, now=END)
    assert again["enqueued"] == 0  # the same window is sent once
    assert dispatch_due(engine, settings).delivered == 2

    [request] = receiver.at(DISCORD_PATH)
    body = request.json()
    assert_valid_discord(body)
    embed = body["embeds"][0]
    assert "3 anomalias" in embed["title"]
    assert "https://pncp.gov.br/app/editais/44444444000144/2025/1" in embed["description"]
    assert "11111111000111" not in embed["description"]
    [(_, _, message)] = smtp_server.mailbox.messages
    text = message.get_body(("plain",)).get_content()
    assert "Total de indícios: 3" in text
    assert "crítica: 1" in text
    assert "55555555000155" not in text


@pytest.mark.parametrize("send_empty", [True, False])
def test_empty_period(engine: Engine, receiver: Receiver, send_empty: bool) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(DISCORD_PATH)], digest_send_empty=send_empty)
    summary = send_critical_anomalies_summary(engine, settings, period_hours=24, now=END)
    assert summary["total"] == 0
    assert summary["enqueued"] == (1 if send_empty else 0)
    dispatch_due(engine, settings)
    requests = receiver.at(DISCORD_PATH)
    if send_empty:
        [request] = requests
        assert "nenhuma anomalia crítica no período" in request.json()["embeds"][0]["title"]
    else:
        assert requests == []


def test_default_window_ends_at_the_hour(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = alert_settings(alert_file=tmp_path_factory.mktemp("out") / "alerts.jsonl")
    summary = send_critical_anomalies_summary(engine, settings, period_hours=6)
    end = datetime.fromisoformat(summary["period"]["end"])
    assert (end.minute, end.second, end.microsecond) == (0, 0, 0)
    assert datetime.now(UTC) - end < timedelta(hours=1)
    assert datetime.fromisoformat(summary["period"]["start"]) == end - timedelta(hours=6)
    with transaction(engine) as session:
        [key] = session.scalars(select(AlertOutboxRow.idempotency_key))
    assert key.startswith(f"digest-{end - timedelta(hours=6):%Y%m%dT%H%M%SZ}-6h-file:")


def test_sqlite_server_default_timestamps_at_the_boundary(sqlite_url: str, receiver: Receiver) -> None:
    """CURRENT_TIMESTAMP text has no fraction ('... 11:00:00'); it must still count as inside at START."""
    upgrade(sqlite_url)
    engine = engine_for(sqlite_url)
    [inside] = findings_adder(engine)(make_finding("11111111000111-1-000001/2025"))
    [outside] = findings_adder(engine)(make_finding("11111111000111-1-000002/2025"))
    with transaction(engine) as session:
        for finding_id, moment in ((inside, START), (outside, END)):
            session.execute(
                text("UPDATE findings SET created_at = :at WHERE id = :id"),
                {"at": moment.strftime("%Y-%m-%d %H:%M:%S"), "id": finding_id},
            )
    settings = alert_settings(alert_webhooks=[receiver.url(DISCORD_PATH)])
    summary = send_critical_anomalies_summary(engine, settings, period_hours=24, now=END)
    assert [f["id"] for f in summary["top"]] == [inside]
