"""Command-line entry point. Each module below adds its commands to the shared app."""

from __future__ import annotations

import sys

from cidadao.cli import admin, alerts, analyse, api, ingest, monitor  # noqa: F401  (register commands)
from cidadao.cli.app import app, err_console
from cidadao.config import SettingsError
from cidadao.store.db import NotMigratedError


def main() -> None:
    try:
        app()
    except (SettingsError, NotMigratedError) as error:
        err_console.print(f"[bold red]error:[/] {error}")
        sys.exit(2)


__all__ = ["app", "main"]
