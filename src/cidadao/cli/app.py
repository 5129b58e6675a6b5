"""The `cidadao` typer app. Command modules register themselves on `app` (see cli/__init__.py)."""

from __future__ import annotations

import typer
from rich.console import Console

from cidadao.config import Settings, get_settings
from cidadao.logs import configure_logging
from cidadao.store.db import engine_for, ensure_migrated

app = typer.Typer(
    name="cidadao",
    help="Cidadão.AI Sentinel: watches Brazilian public procurement and flags direct-award risks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest PNCP records from the API or from files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(ingest_app, name="ingest")

console = Console()
err_console = Console(stderr=True)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    """Logs go to stderr so that command output on stdout stays clean for pipes."""
    get_settings.cache_clear()  # each invocation is a start-up: read the environment afresh
    current = settings()
    configure_logging("DEBUG" if verbose else current.log_level, current.log_format)


def settings() -> Settings:
    return get_settings()


def migrated_engine(url: str | None = None):  # type: ignore[no-untyped-def]
    """The configured database, refusing one that has not been migrated."""
    engine = engine_for(url or settings().effective_database_url)
    ensure_migrated(engine)
    return engine
