"""Alert channels. Importing this package registers every kind."""

from __future__ import annotations

from collections import Counter

from cidadao.alerts.channels import console, discord, email, webhook
from cidadao.alerts.channels.base import Channel, Delivery, DeliveryError, build_channels, registered_kinds
from cidadao.config import Settings


def configured_channels(settings: Settings) -> dict[str, int]:
    """Number of configured channels per kind (never URLs or addresses), for readiness and start-up logs."""
    counts = Counter(channel.kind for channel in build_channels(settings))
    return {kind: counts.get(kind, 0) for kind in registered_kinds()}


__all__ = [
    "Channel",
    "Delivery",
    "DeliveryError",
    "build_channels",
    "configured_channels",
    "console",
    "discord",
    "email",
    "webhook",
]
