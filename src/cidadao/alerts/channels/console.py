"""Console and JSON Lines file channels, for the embedded/demo mode and for local inspection."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from cidadao.alerts.channels.base import Channel, Delivery, DeliveryError, min_rank_for, register, short_hash
from cidadao.alerts.render import render
from cidadao.config import Settings


class ConsoleChannel(Channel):
    kind = "console"

    def send(self, delivery: Delivery) -> None:
        sys.stdout.write(render(delivery.payload, "txt") + "\n")
        sys.stdout.flush()


class FileChannel(Channel):
    """Appends one JSON object per alert (the webhook body plus its id) and fsyncs it."""

    kind = "file"

    def __init__(self, slug: str, min_rank: int, path: Path) -> None:
        super().__init__(slug, min_rank)
        self._path = path

    def send(self, delivery: Delivery) -> None:
        line = orjson.dumps({"id": delivery.key, **delivery.payload}) + b"\n"
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise DeliveryError(f"cannot write alert file: {error.strerror}") from None


@register("console")
def _console_channels(settings: Settings) -> Sequence[Channel]:
    return [ConsoleChannel("console", min_rank_for(settings, "console"))] if settings.alert_console else []


@register("file")
def _file_channels(settings: Settings) -> Sequence[Channel]:
    if settings.alert_file is None:
        return []
    rank = min_rank_for(settings, "file")
    return [FileChannel(f"file:{short_hash(str(settings.alert_file))}", rank, settings.alert_file)]
