"""Commands: `ingest file`, `ingest pncp`, `generate`, `demo`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine

from cidadao.cli.app import app, console, err_console, ingest_app, migrated_engine, settings
from cidadao.data import sample_paths
from cidadao.monitor.ingest import IngestFailed, IngestStats, ingest_file, ingest_pncp
from cidadao.monitor.ingest import Progress as ProgressCallback
from cidadao.sources.generator import write_jsonl
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.repositories import record_summary

DATE_FORMATS = ["%Y-%m-%d"]


@contextmanager
def _progress(description: str, total: int | None = None) -> Iterator[ProgressCallback]:
    """A rich progress bar fed with the running IngestStats."""
    with _bar() as bar:
        task = bar.add_task(description, total=total)
        yield lambda stats: bar.update(task, completed=stats.fetched)


def _bar() -> Progress:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True)


def print_counts(title: str, rows: list[tuple[str, IngestStats]], out: Console = console) -> None:
    table = Table("source", "fetched", "ingested", "updated", "unchanged", "quarantined", title=title)
    for name, stats in rows:
        table.add_row(name, *(str(value) for value in stats.counts().values()))
    out.print(table)


def _fail(error: IngestFailed, name: str) -> typer.Exit:
    print_counts("stored before the failure", [(name, error.stats)], err_console)
    err_console.print(f"[bold red]ingestion failed (run {error.stats.run_id}):[/] {error}")
    return typer.Exit(1)


@ingest_app.command("file")
def ingest_files(
    paths: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="PNCP page, JSON array, JSON Lines or CSV."
    ),
    jobs: int = typer.Option(
        1, "--jobs", min=1, help="Processes sharing each JSON Lines file (PostgreSQL; e.g. the CPU count)."
    ),
) -> None:
    """Ingest PNCP records from files; unusable records go to quarantine with their reason."""
    engine = migrated_engine()
    results: list[tuple[str, IngestStats]] = []
    for path in paths:
        try:
            with _progress(f"ingesting {path.name}") as progress:
                results.append((path.name, ingest_file(engine, path, progress=progress, jobs=jobs)))
        except IngestFailed as error:
            raise _fail(error, path.name) from error
    print_counts("ingestion", results)


@ingest_app.command("pncp")
def ingest_pncp_command(
    start: datetime | None = typer.Option(
        None, "--from", formats=DATE_FORMATS, help="First day (YYYY-MM-DD); omitted: from the watermark."
    ),
    end: datetime | None = typer.Option(
        None, "--to", formats=DATE_FORMATS, help="Last day (YYYY-MM-DD); omitted: today."
    ),
) -> None:
    """Fetch dispensas/inexigibilidades and contratos from the PNCP API, resuming after a crash."""
    if start and end and end < start:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    engine = migrated_engine()
    try:
        with _progress("fetching PNCP pages") as progress:
            stats = ingest_pncp(
                engine,
                settings(),
                start.date() if start else None,
                end.date() if end else None,
                progress=progress,
            )
    except IngestFailed as error:
        raise _fail(error, "pncp") from error
    print_counts("ingestion", [("pncp", stats)])


@app.command("generate")
def generate(
    records: int = typer.Option(
        100_000, "--records", min=1, help="Records to write (contratações + contratos)."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same file."),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="JSON Lines file to write."),
) -> None:
    """Write synthetic PNCP direct awards with linked contratos, calibrated on the real sample."""
    with _bar() as bar:
        task = bar.add_task(f"generating {out.name}", total=records)
        written = write_jsonl(
            out, records, seed, progress=lambda done, _total: bar.update(task, completed=done)
        )
    console.print(f"wrote {written:,} records to {out}")


def run_demo(url: str | None = None) -> tuple[Engine, IngestStats]:
    """Migrate the database (default: the local SQLite file), ingest the shipped real sample, summarise."""
    url = url or settings().effective_database_url
    upgrade(url)
    engine = engine_for(url)
    path = sample_paths().contratacoes
    with _progress(f"ingesting {path.name}") as progress:
        stats = ingest_file(engine, path, progress=progress)
    console.print(f"database: {engine.url.render_as_string()}")
    print_counts("real PNCP sample (PNCP, via Transparência Brasil)", [(path.name, stats)])
    print_summary(engine)
    return engine, stats


def print_summary(engine: Engine, limit: int = 15) -> None:
    with transaction(engine) as session:
        groups = record_summary(session)
    table = Table("kind", "modalidade", "UF", "records", title="stored records")
    for kind, modalidade, name, uf, count in groups[:limit]:
        label = f"{modalidade} {name}" if modalidade is not None else "-"
        table.add_row(kind, label, uf or "-", str(count))
    if len(groups) > limit:
        rest = sum(group[-1] for group in groups[limit:])
        table.add_row("...", f"{len(groups) - limit} more groups", "", str(rest))
    table.add_section()
    table.add_row("total", "", "", str(sum(group[-1] for group in groups)))
    console.print(table)


@app.command("demo")
def demo() -> None:
    """Run on the shipped real PNCP sample: migrate the local database, ingest, print a summary."""
    run_demo()
