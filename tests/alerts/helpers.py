"""Settings and checks shared by the alert tests."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cidadao.config import Settings, load_settings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def alert_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "alert_allowed_hosts": ["localhost"],
        "alert_webhook_secret": SECRET,
        "alert_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return load_settings(**values)


def _documented_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The receiver-side check exactly as published in docs/alerts.md, so the docs cannot drift."""
    text = (Path(__file__).parents[2] / "docs" / "alerts.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/alerts.md", "exec"), namespace)
    verify: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return verify


verify_signature = _documented_verify()


DISCORD_LIMITS = {"title": 256, "description": 4096, "fields": 25, "name": 256, "value": 1024, "footer": 2048}


def assert_valid_discord(body: dict[str, Any]) -> None:
    """Discord's documented message and embed limits (a real Discord answers 400 otherwise)."""
    assert body.get("content") or body.get("embeds"), "Discord needs content or embeds"
    assert len(body.get("content", "")) <= 2000
    embeds = body.get("embeds", [])
    assert len(embeds) <= 10
    total = 0
    for embed in embeds:
        assert len(embed.get("title", "")) <= DISCORD_LIMITS["title"]
        assert len(embed.get("description", "")) <= DISCORD_LIMITS["description"]
        assert isinstance(embed.get("color", 0), int)
        assert 0 <= embed.get("color", 0) <= 0xFFFFFF
        if "url" in embed:
            assert embed["url"].startswith("https://")
        fields = embed.get("fields", [])
        assert len(fields) <= DISCORD_LIMITS["fields"]
        for item in fields:
            assert 0 < len(item["name"]) <= DISCORD_LIMITS["name"]
            assert 0 < len(item["value"]) <= DISCORD_LIMITS["value"]
        footer = embed.get("footer", {}).get("text", "")
        assert len(footer) <= DISCORD_LIMITS["footer"]
        total += len(embed.get("title", "")) + len(embed.get("description", "")) + len(footer)
        total += sum(len(f["name"]) + len(f["value"]) for f in fields)
    assert total <= 6000
