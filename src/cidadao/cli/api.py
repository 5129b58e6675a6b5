"""Commands: `serve` (the API under uvicorn) and `apikey create|revoke|list`."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from rich.table import Table

from cidadao.api.auth import create_api_key, list_api_keys, parse_scopes, revoke_api_key
from cidadao.api.metrics import metrics_shared_by_workers
from cidadao.cli.app import app, console, err_console, migrated_engine, settings

apikey_app = typer.Typer(help="API keys (stored hashed; the key is shown once).", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="default: PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="restart on code changes (development)")] = False,
) -> None:
    """Run the HTTP API (FastAPI under uvicorn)."""
    migrated_engine()  # refuse to serve an unmigrated database, before forking workers
    with metrics_shared_by_workers(workers):
        uvicorn.run(
            "cidadao.api.app:serve_app",
            factory=True,
            host=host,
            port=port or settings().port,
            workers=workers,
            reload=reload,
            proxy_headers=True,
            access_log=False,  # our middleware logs each request with its request id
            log_config=None,
        )


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key")],
    scope: Annotated[str, typer.Option(help="comma-separated: read, write, admin")] = "read",
) -> None:
    """Create an API key and print it (only this once)."""
    try:
        scopes = parse_scopes(scope)
    except ValueError as error:
        err_console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    key_id, key = create_api_key(migrated_engine(), settings(), name, scopes)
    err_console.print(f"API key {key_id} for {name!r} with scopes {','.join(scopes)}; store it now:")
    typer.echo(key)


@apikey_app.command("revoke")
def apikey_revoke(
    prefix: Annotated[str, typer.Argument(help="the key's prefix (see `apikey list`)")],
) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    if not revoke_api_key(migrated_engine(), prefix):
        err_console.print(f"[bold red]error:[/] no active API key with prefix {prefix!r}")
        raise typer.Exit(1)
    console.print(f"revoked {prefix}")


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (prefix, scopes, last use; never the key)."""
    table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
    for key in list_api_keys(migrated_engine()):
        table.add_row(
            str(key["id"]),
            key["name"],
            key["prefix"],
            ",".join(key["scopes"] or []),
            str(key["created_at"] or ""),
            str(key["last_used_at"] or ""),
            str(key["revoked_at"] or ""),
        )
    console.print(table)
