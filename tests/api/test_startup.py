from __future__ import annotations

import gc
import logging

import pytest
from tests.api.conftest import TestClient, make_settings

from cidadao.api.app import create_app, serve_app
from cidadao.config import get_settings


def test_start_up_logs_channel_counts_never_urls(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    token_url = "https://discord.com/api/webhooks/123/secret-token"
    settings = make_settings(
        sqlite_url, alert_webhooks=[token_url, "https://hooks.example.org/in"], alert_webhook_secret="s3cret"
    )
    with caplog.at_level(logging.INFO), TestClient(create_app(settings)):
        pass
    [line] = [r.getMessage() for r in caplog.records if "alert channels configured" in r.getMessage()]
    assert "'discord': 1" in line
    assert "'webhook': 1" in line
    assert "secret-token" not in caplog.text


@pytest.mark.parametrize("enabled", [False, True])
def test_opentelemetry_bridge_follows_its_setting(sqlite_url: str, enabled: bool) -> None:
    app = create_app(make_settings(sqlite_url, api_opentelemetry=enabled))
    config = app._telemetry  # FastAPI's own switches for its OpenTelemetry bridge
    assert (config["tracing"], config["metrics"], config["logs"]) == (enabled, enabled, enabled)


def test_worker_factory_sets_the_loaded_app_aside_from_the_garbage_collector(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    threshold = gc.get_threshold()
    try:
        serve_app()
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] > threshold[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        get_settings.cache_clear()
