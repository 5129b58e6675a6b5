"""`cidadao alerts ...` end to end on a migrated SQLite file, and rendering of system alerts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from tests.alerts.conftest import DISCORD_PATH, HOOK_PATH, Receiver, Reply
from tests.alerts.helpers import SECRET, assert_valid_discord, verify_signature
from typer.testing import CliRunner

from cidadao.alerts.channels.discord import discord_body
from cidadao.alerts.payload import envelope
from cidadao.alerts.render import render, subject
from cidadao.cli import app
from cidadao.store.db import upgrade


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, receiver: Receiver, tmp_path: Path) -> Path:
    upgrade(sqlite_url)
    alert_file = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ALERT_WEBHOOKS", f"{receiver.url(HOOK_PATH)},{receiver.url(DISCORD_PATH)}")
    monkeypatch.setenv("ALERT_ALLOWED_HOSTS", "localhost")
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ALERT_FILE", str(alert_file))
    return alert_file


def test_alerts_test_reaches_every_channel(cli_env: Path, receiver: Receiver) -> None:
    receiver.script(DISCORD_PATH, Reply(404, body=b"Unknown Webhook"))
    result = CliRunner().invoke(app, ["alerts", "test"])
    assert result.exit_code == 0, result.output
    assert result.output.count("│ delivered │") == 2
    assert result.output.count("│ dead      │") == 1
    assert "HTTP 404" in result.output
    [request] = receiver.at(HOOK_PATH)
    assert verify_signature(SECRET, request.headers, request.body)
    assert request.json()["type"] == "system.test"
    [line] = cli_env.read_bytes().splitlines()
    assert "canal está configurado" in orjson.loads(line)["data"]["message"]

    status = CliRunner().invoke(app, ["alerts", "status"])
    assert status.exit_code == 0, status.output
    assert "discord=1" in status.output
    assert "webhook=1" in status.output
    assert "dead=1" in status.output
    assert "tok-en_SECRET" not in result.output + status.output


def test_alerts_digest_and_dispatch(cli_env: Path) -> None:
    result = CliRunner().invoke(app, ["alerts", "digest", "--hours", "24"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "0 findings, 3 alerts queued" in output
    assert "delivered=3" in output
    [line] = cli_env.read_bytes().splitlines()
    assert orjson.loads(line)["type"] == "digest.daily"
    again = CliRunner().invoke(app, ["alerts", "dispatch"])
    assert again.exit_code == 0, again.output
    assert "claimed=0" in again.output


def test_system_alert_renders_its_message() -> None:
    payload = envelope("system.stale_jobs", {"max_severity": "critical", "message": "Tarefas <atrasadas>"})
    assert subject(payload) == "[Cidadão.AI] Aviso do sistema"
    assert "Tarefas &lt;atrasadas&gt;" in render(payload, "html")
    assert "Tarefas <atrasadas>" in render(payload, "txt")
    body = discord_body(payload)
    assert_valid_discord(body)
    assert body["embeds"][0]["color"] == 0xDC3545
    assert body["embeds"][0]["description"] == "Tarefas \\<atrasadas\\>"
