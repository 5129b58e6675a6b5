"""Generic JSON webhooks signed as in the Standard Webhooks spec (webhook-id, -timestamp, -signature)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cidadao.alerts.channels.base import Channel, Delivery, HttpChannel, min_rank_for, register, short_hash
from cidadao.alerts.channels.discord import is_discord_url
from cidadao.config import Settings

# Development only: next to the default SQLite file, readable by the operator, outside the database so
# wiping the database does not silently rotate the secret receivers verify against.
DEV_SECRET_PATH = Path("var") / "webhook-secret"
_SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """Standard Webhooks secrets are `whsec_` + base64 key; any other string is used as raw bytes."""
    if secret.startswith(_SECRET_PREFIX):
        return base64.b64decode(secret[len(_SECRET_PREFIX) :])
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_secret(settings: Settings) -> str:
    """ALERT_WEBHOOK_SECRET, or (outside production) one generated on first use, stored and shown once."""
    if settings.alert_webhook_secret is not None:
        return settings.alert_webhook_secret.get_secret_value()
    if settings.environment == "production":
        raise RuntimeError("ALERT_WEBHOOK_SECRET is required when ENVIRONMENT=production")
    try:
        return DEV_SECRET_PATH.read_text().strip()
    except FileNotFoundError:
        pass
    secret = _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    DEV_SECRET_PATH.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(DEV_SECRET_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return DEV_SECRET_PATH.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    # Deliberately not logged: printed once for the operator who must configure the receiver.
    sys.stderr.write(
        f"Generated a webhook signing secret (stored in {DEV_SECRET_PATH}, shown only now): {secret}\n"
    )
    return secret


class WebhookChannel(HttpChannel):
    kind = "webhook"

    def __init__(self, slug: str, min_rank: int, url: str, settings: Settings) -> None:
        super().__init__(slug, min_rank, url, settings)
        self._settings = settings
        self._secret: str | None = None  # resolved at first send: building channels does no I/O

    def headers(self, delivery: Delivery, body: bytes) -> dict[str, str]:
        if self._secret is None:
            self._secret = webhook_secret(self._settings)
        timestamp = int(time.time())
        return {
            "webhook-id": delivery.key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._secret, delivery.key, timestamp, body),
        }


@register("webhook")
def _webhook_channels(settings: Settings) -> Sequence[Channel]:
    urls = [url for url in settings.alert_webhooks if not is_discord_url(url, settings.alert_allowed_hosts)]
    rank = min_rank_for(settings, "webhook")
    return [WebhookChannel(f"webhook:{short_hash(url)}", rank, url, settings) for url in urls]
