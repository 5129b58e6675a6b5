"""Commands: `db upgrade`, `config show`."""

from __future__ import annotations

from rich.table import Table

from cidadao.cli.app import config_app, console, db_app, settings
from cidadao.store.db import upgrade


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (PostgreSQL or SQLite) up to the latest revision."""
    url = settings().effective_database_url
    upgrade(url)
    console.print(f"database at latest revision: {settings().masked()['DATABASE_URL']}")


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    table = Table("setting", "value")
    for name, value in settings().masked().items():
        table.add_row(name, value)
    console.print(table)
