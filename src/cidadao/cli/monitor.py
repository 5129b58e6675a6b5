"""Commands: `monitor` (one pass or a loop, no Celery needed), `worker`, `beat`, `up [--demo]`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cidadao.cli.app import app, console, migrated_engine, settings
from cidadao.monitor.pipeline import PassResult, run_pass, run_tail
from cidadao.runtime.supervisor import Child, Supervisor, beat_command, web_command, worker_command
from cidadao.store.db import upgrade


def print_pass(result: PassResult) -> None:
    table = Table(title=f"monitor pass (run {result.run_id})")
    table.add_column("step")
    table.add_column("counts")
    for step, counts in result.as_dict().items():
        if isinstance(counts, dict) and counts:
            table.add_row(step, ", ".join(f"{name} {value}" for name, value in counts.items()))
    if result.sanctions:
        table.add_row("sanctions", f"stored {result.sanctions}")
    console.print(table)


@app.command("monitor")
def monitor(
    once: Annotated[bool, typer.Option("--once", help="run one pass and exit")] = False,
    from_file: Annotated[
        list[Path] | None,
        typer.Option("--from-file", exists=True, dir_okay=False, help="records from this file as if fetched"),
    ] = None,
    sanctions: Annotated[
        list[Path] | None,
        typer.Option("--sanctions", exists=True, dir_okay=False, help="CEIS/CNEP CSV or JSON file"),
    ] = None,
) -> None:
    """Fetch, analyse, write findings and alerts, dispatch them. Without --once: a full pass every
    MONITOR_INTERVAL_SECONDS and, between them, every POLL_INTERVAL_SECONDS, only what PNCP appended today."""
    engine = migrated_engine()
    config = settings()
    while True:
        result = run_pass(
            engine, config, files=from_file or [], sanctions=sanctions or [], include_global=True
        )
        print_pass(result)
        if once or from_file:
            return
        next_pass = time.monotonic() + config.monitor_interval_seconds
        while next_pass - time.monotonic() > config.poll_interval_seconds:
            time.sleep(config.poll_interval_seconds)
            polled = run_tail(engine, config)
            if polled.ingest.get("fetched"):
                print_pass(polled)
        time.sleep(max(0.0, next_pass - time.monotonic()))


@app.command("worker")
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes")] = 4,
    pool: Annotated[str, typer.Option(help="prefork, solo or threads")] = "prefork",
) -> None:
    """Celery worker consuming the critical, high and default queues."""
    argv = worker_command(concurrency, pool)
    os.execv(argv[0], argv)


@app.command("beat")
def beat() -> None:
    """Celery beat (singleton: a second one waits as hot standby)."""
    argv = beat_command()
    os.execv(argv[0], argv)


@app.command("up")
def up(
    demo: Annotated[
        bool,
        typer.Option("--demo", help="serve the real sample (+ synthetic dispensas) via a local PNCP replay"),
    ] = False,
) -> None:
    """Run web, worker and beat here, supervised (restart on crash, Ctrl-C stops all)."""
    env: dict[str, str] = {}
    replay = None
    if demo:
        from cidadao.runtime.demo import Demo

        replay = Demo()
        env = replay.prepare()
        console.print(
            "[bold]Demo:[/] real PNCP sample (via Transparência Brasil) served at "
            f"{env['PNCP_BASE_URL']}, plus SYNTHETIC dispensas (labelled as such) every few seconds.\n"
            f"Alerts: this console and {env['ALERT_FILE']}. API: http://127.0.0.1:{settings().port}/docs"
        )
    else:
        # Migrations run once, here, before any child starts.
        upgrade(settings().effective_database_url)
    embedded = not (env.get("REDIS_URL") if demo else settings().redis_url)
    if embedded:
        from cidadao.worker.app import declare_embedded_queues  # imported here: it builds the Celery app

        declare_embedded_queues(env.get("EMBEDDED_BROKER_URL") or settings().embedded_broker_url)
    children = [
        Child("web", web_command(settings(), workers=1), env),
        Child("worker", worker_command(concurrency=2 if embedded else 4), env),
        Child("beat", beat_command(), env),
    ]
    try:
        Supervisor(children).run()
    finally:
        if replay is not None:
            replay.stop()
