"""Each channel against a real local receiver: payload shape, signature, e-mail over TLS, escaping."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, select
from tests.alerts.conftest import (
    DISCORD_PATH,
    HOOK_PATH,
    AddFindings,
    Receiver,
    Smtp,
    add_record,
    make_finding,
)
from tests.alerts.helpers import SECRET, alert_settings, assert_valid_discord, verify_signature

from cidadao.alerts.channels import configured_channels
from cidadao.alerts.channels.discord import discord_body
from cidadao.alerts.channels.webhook import DEV_SECRET_PATH, webhook_secret
from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import enqueue_alerts
from cidadao.config import Settings, load_settings
from cidadao.domain.records import Severity
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow

RECORD = "12345678000190-1-000042/2025"
NASTY = 'Linha 1\r\nBcc: intruso@example.org\r\n<script>alert("x")</script> @everyone **negrito** [link](https://mal.example)'


def _enqueue(engine: Engine, settings: Settings, ids: list[int]) -> int:
    with transaction(engine) as session:
        return enqueue_alerts(session, ids, settings)


def _rows(engine: Engine) -> list[AlertOutboxRow]:
    with transaction(engine) as session:
        return list(session.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.id)))


def test_discord_embed_in_portuguese_within_limits(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(DISCORD_PATH)])
    add_record(engine, RECORD)
    ids = add_findings(make_finding(RECORD, severity=Severity.CRITICAL, score=0.97))
    assert _enqueue(engine, settings, ids) == 1
    stats = dispatch_due(engine, settings)
    assert (stats.claimed, stats.delivered) == (1, 1)

    [request] = receiver.at(DISCORD_PATH)
    body = request.json()
    assert_valid_discord(body)
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["color"] == 0xDC3545
    assert embed["title"] == "Risco crítico: split\\_purchase — Prefeitura Municipal de Exemplo"
    assert embed["url"] == "https://pncp.gov.br/app/editais/12345678000190/2025/42"
    fields = {item["name"]: item["value"] for item in embed["fields"]}
    assert fields["Órgão"] == "Prefeitura Municipal de Exemplo"
    assert fields["UF"] == "MG"
    assert fields["Valor"] == "R$ 123.456,78"
    assert fields["Fornecedor"] == "Fornecedora Exemplo Ltda"
    assert fields["Regra"].startswith("split\\_purchase")
    assert fields["PNCP"] == embed["url"]
    [row] = _rows(engine)
    assert row.status == "delivered"
    assert request.headers["webhook-id"] == row.idempotency_key
    assert row.channel.startswith("discord:")
    assert "tok-en_SECRET" not in row.channel + row.idempotency_key


@pytest.mark.parametrize("severity", list(Severity))
def test_discord_colour_by_severity_and_huge_text_fits(severity: Severity) -> None:
    colours = {"critical": 0xDC3545, "high": 0xFD7E14, "medium": 0xFFC107, "low": 0x28A745}
    finding = {
        "id": 1, "rule": "r" * 300, "rule_version": "1", "severity": severity.value, "score": 0.5,
        "message": "x" * 9000, "legal_basis": "L" * 3000, "evidence": {}, "created_at": None,
        "record": RECORD, "link": None, "buyer_cnpj": "1", "buyer_name": "B" * 2000, "uf": "SP",
        "municipality": None, "supplier_id": None, "supplier_name": "S" * 5000, "value": None, "object": None,
    }  # fmt: skip
    body = discord_body({"version": "1", "type": "finding.created", "data": {"finding": finding}})
    assert_valid_discord(body)
    assert body["embeds"][0]["color"] == colours[severity.value]
    group = {"version": "1", "type": "findings.grouped", "data": {
        "buyer": {"cnpj": "1", "name": "B" * 900, "uf": "SP"}, "count": 200, "max_severity": severity.value,
        "finding_ids": list(range(200)), "findings": [{**finding, "message": "m" * 400}] * 200,
    }}  # fmt: skip
    grouped = discord_body(group)
    assert_valid_discord(grouped)
    assert "e mais" in grouped["embeds"][0]["description"]


def test_generic_webhook_signed_with_versioned_payload(
    engine: Engine, receiver: Receiver, add_findings: AddFindings
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    add_record(engine, RECORD)
    ids = add_findings(make_finding(RECORD))
    _enqueue(engine, settings, ids)
    assert dispatch_due(engine, settings).delivered == 1

    [request] = receiver.at(HOOK_PATH)
    assert verify_signature(SECRET, request.headers, request.body)
    assert not verify_signature(SECRET, request.headers, request.body.replace(b"MG", b"SP"))
    payload = request.json()
    assert payload["version"] == "1"
    assert payload["type"] == "finding.created"
    finding = payload["data"]["finding"]
    assert finding["id"] == ids[0]
    assert finding["severity"] == "high"
    assert finding["link"] == "https://pncp.gov.br/app/editais/12345678000190/2025/42"
    assert finding["value"] == "123456.78"
    assert finding["evidence"] == {"count": 3}
    assert request.headers["webhook-id"] == f"finding-{ids[0]}-{_rows(engine)[0].channel}"


def test_development_secret_generated_once_and_kept_private(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings()  # ENVIRONMENT=test, no ALERT_WEBHOOK_SECRET
    first = webhook_secret(settings)
    shown = capsys.readouterr().err
    assert first in shown
    assert first.startswith("whsec_")
    assert stat.S_IMODE(os.stat(DEV_SECRET_PATH).st_mode) == 0o600
    assert webhook_secret(settings) == first
    assert capsys.readouterr().err == ""  # shown only once


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_text_and_html(
    request: pytest.FixtureRequest, engine: Engine, add_findings: AddFindings, security: str
) -> None:
    server: Smtp = request.getfixturevalue("smtp_server" if security == "starttls" else "smtps_server")
    settings = alert_settings(
        alert_emails=["reporter@example.org", "auditor@example.org"],
        smtp_host="localhost",
        smtp_port=server.port,
        smtp_security=security,
    )
    add_record(engine, RECORD)
    ids = add_findings(make_finding(RECORD, severity=Severity.CRITICAL))
    assert _enqueue(engine, settings, ids) == 2  # one per address
    assert dispatch_due(engine, settings).delivered == 2

    assert sorted(rcpt for _, rcpts, _ in server.mailbox.messages for rcpt in rcpts) == [
        "auditor@example.org",
        "reporter@example.org",
    ]
    _, _, message = server.mailbox.messages[0]
    assert message["Subject"].startswith("[Cidadão.AI] Risco crítico: split_purchase")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Compra fracionada" in text
    assert "R$ 123.456,78" in text
    assert "https://pncp.gov.br/app/editais/12345678000190/2025/42" in html


def test_finding_text_with_crlf_and_html_is_escaped(
    engine: Engine, receiver: Receiver, smtp_server: Smtp, add_findings: AddFindings
) -> None:
    settings = alert_settings(
        alert_webhooks=[receiver.url(DISCORD_PATH)],
        alert_emails=["reporter@example.org"],
        smtp_host="localhost",
        smtp_port=smtp_server.port,
    )
    add_record(engine, RECORD, buyer_name="Órgão\r\nX-Injected: sim <b>negrito</b>")
    ids = add_findings(make_finding(RECORD, rule="split_purchase", message=NASTY))
    _enqueue(engine, settings, ids)
    assert dispatch_due(engine, settings).delivered == 2

    [(_, rcpts, message)] = smtp_server.mailbox.messages
    assert rcpts == ["reporter@example.org"]
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    assert "\n" not in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<b>negrito</b>" not in html
    text = message.get_body(("plain",)).get_content()
    assert "\nBcc:" not in text

    body = receiver.at(DISCORD_PATH)[0].json()
    assert_valid_discord(body)
    embed = body["embeds"][0]
    for value in [embed["title"], embed["description"], *(f["value"] for f in embed["fields"])]:
        assert "\r" not in value
        assert "\n" not in value
        assert "<script>" not in value
        assert "@everyone" not in value
        assert "**negrito**" not in value
    assert "\\<script\\>" in embed["description"]


def test_file_and_console_channels(
    engine: Engine, add_findings: AddFindings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alerts.jsonl"
    settings = alert_settings(alert_file=path, alert_console=True, alert_channel_min_severity=["file=low"])
    assert configured_channels(settings) == {"console": 1, "discord": 0, "email": 0, "file": 1, "webhook": 0}
    add_record(engine, RECORD)
    ids = add_findings(make_finding(RECORD, rule="a", severity=Severity.LOW), make_finding(RECORD, rule="b"))
    assert _enqueue(engine, settings, ids) == 3  # file takes low too, console only high
    assert dispatch_due(engine, settings).delivered == 3
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(line["data"]["finding"]["rule"] for line in lines) == ["a", "b"]
    assert all(line["id"].startswith("finding-") for line in lines)
    out = capsys.readouterr().out
    assert "Risco alto: b" in out
    assert "Risco baixo" not in out


def test_configured_channels_counts_kinds_never_urls(receiver: Receiver) -> None:
    settings = alert_settings(
        alert_webhooks=[
            "https://discord.com/api/webhooks/1/abc",
            "https://discordapp.com/api/webhooks/2/def",
            "https://hooks.example.org/cidadao",
            receiver.url(DISCORD_PATH),
        ],
        alert_emails=["a@example.org"],
        smtp_host="smtp.example.org",
    )
    counts = configured_channels(settings)
    assert counts == {"console": 0, "discord": 3, "email": 1, "file": 0, "webhook": 1}
