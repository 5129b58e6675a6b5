"""Commands: `cidadao alerts dispatch|test|digest|status`."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import typer
from rich.table import Table
from sqlalchemy import select

from cidadao.alerts.channels import build_channels, configured_channels
from cidadao.alerts.digest import send_critical_anomalies_summary
from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import insert_rows, outbox_counts, outbox_row
from cidadao.alerts.payload import envelope
from cidadao.cli.app import app, console, err_console, migrated_engine, settings
from cidadao.logs import get_logger
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow

log = get_logger(__name__)
alerts_app = typer.Typer(help="Alert outbox: deliver, test channels, send the digest.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("dispatch")
def dispatch(
    limit: int = typer.Option(100, min=1, help="alerts per pass"),
    loop: bool = typer.Option(False, help="keep dispatching every DISPATCH_INTERVAL_SECONDS"),
) -> None:
    """Deliver due alerts once (or forever with --loop)."""
    config = settings()
    engine = migrated_engine()
    log.info("alert channels configured", **configured_channels(config))
    while True:
        stats = dispatch_due(engine, config, limit=limit)
        console.print(" ".join(f"{name}={value}" for name, value in stats.as_dict().items()))
        if not loop:
            return
        if stats.claimed < limit:
            time.sleep(config.dispatch_interval_seconds)


@alerts_app.command("test")
def test_alert() -> None:
    """Queue one test alert per configured channel and deliver it now."""
    config = settings()
    engine = migrated_engine()
    channels = build_channels(config)
    if not channels:
        err_console.print(
            "no alert channel configured (ALERT_WEBHOOKS, ALERT_EMAILS, ALERT_FILE, ALERT_CONSOLE)"
        )
        raise typer.Exit(1)
    run = uuid.uuid4().hex[:12]
    message = (
        "Alerta de teste do Cidadão.AI Sentinel: se você recebeu esta mensagem, o canal está configurado."
    )
    payload = envelope("system.test", {"max_severity": "low", "message": message})
    now = datetime.now(UTC)
    keys = {f"test-{run}-{channel.slug}": channel.slug for channel in channels}
    with transaction(engine) as session:
        insert_rows(session, [outbox_row(key, slug, "system", payload, now) for key, slug in keys.items()])
    dispatch_due(engine, config, limit=len(keys))
    table = Table("channel", "status", "error")
    with transaction(engine) as session:
        rows = session.execute(
            select(AlertOutboxRow.channel, AlertOutboxRow.status, AlertOutboxRow.last_error).where(
                AlertOutboxRow.idempotency_key.in_(list(keys))
            )
        )
        for channel, status, error in rows:
            table.add_row(channel, status, error or "")
    console.print(table)


@alerts_app.command("digest")
def digest(hours: int = typer.Option(24, min=1, help="period ending at the start of this hour")) -> None:
    """Queue the summary of the findings created in the period, then deliver it."""
    config = settings()
    engine = migrated_engine()
    summary = send_critical_anomalies_summary(engine, config, period_hours=hours)
    console.print(
        f"period {summary['period']['start']} .. {summary['period']['end']}: "
        f"{summary['total']} findings, {summary['enqueued']} alerts queued"
    )
    stats = dispatch_due(engine, config)
    console.print(" ".join(f"{name}={value}" for name, value in stats.as_dict().items()))


@alerts_app.command("status")
def status() -> None:
    """Configured channels per kind (never URLs), outbox counts and the latest dead letters."""
    config = settings()
    engine = migrated_engine()
    console.print("channels: " + ", ".join(f"{k}={v}" for k, v in configured_channels(config).items()))
    console.print("outbox: " + ", ".join(f"{k}={v}" for k, v in outbox_counts(engine).items()))
    table = Table("id", "channel", "attempts", "last error")
    with transaction(engine) as session:
        rows = session.execute(
            select(AlertOutboxRow.idempotency_key, AlertOutboxRow.channel, AlertOutboxRow.attempts,
                   AlertOutboxRow.last_error)
            .where(AlertOutboxRow.status == "dead")
            .order_by(AlertOutboxRow.id.desc())
            .limit(20)
        )  # fmt: skip
        for key, channel, attempts, error in rows:
            table.add_row(key, channel, str(attempts), error or "")
    if table.row_count:
        console.print(table)
