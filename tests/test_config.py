from __future__ import annotations

import pytest

from cidadao.config import SettingsError, load_settings


def test_defaults_use_a_sqlite_file_under_var() -> None:
    assert load_settings().effective_database_url == "sqlite:///var/cidadao.sqlite"


def test_malformed_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SettingsError, match="PORT"):
        load_settings()


def test_production_refuses_missing_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="DATABASE_URL is required"):
        load_settings()


def test_comma_separated_lists_and_bad_email(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_WEBHOOKS", "https://a.example/x, https://b.example/y")
    monkeypatch.setenv("PNCP_MODALIDADES", "8,9,12")
    settings = load_settings()
    assert settings.alert_webhooks == ["https://a.example/x", "https://b.example/y"]
    assert settings.pncp_modalidades == [8, 9, 12]
    monkeypatch.setenv("ALERT_EMAILS", "not-an-address")
    with pytest.raises(SettingsError, match="ALERT_EMAILS"):
        load_settings()


def test_masked_hides_secrets_and_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://user:hunter2@db.example:5432/app")
    monkeypatch.setenv("ALERT_WEBHOOKS", "https://discord.com/api/webhooks/123/tok-en_SECRET")
    monkeypatch.setenv("JWT_SECRET_KEY", "very-secret")
    shown = load_settings().masked()
    text = " ".join(shown.values())
    assert "hunter2" not in text
    assert "tok-en_SECRET" not in text
    assert "very-secret" not in text
    assert shown["DATABASE_URL"].startswith("postgresql+psycopg://***@db.example")
