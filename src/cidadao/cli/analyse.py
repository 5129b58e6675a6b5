"""Commands: `analyse` (red flags over files, offline, no database) and `rules` (the indicators)."""

from __future__ import annotations

import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
import polars as pl
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cidadao.cli.app import app, console, err_console, settings
from cidadao.domain.records import Rejection, Severity
from cidadao.redflags.base import REGISTRY
from cidadao.redflags.engine import EngineResult, RulesConfig, RulesConfigError, run_rules
from cidadao.redflags.frame import (
    KindFrames,
    dataset_from_frames,
    frame_from_raw,
    split_kinds,
    split_ndjson,
)
from cidadao.sources.files import detect_format, read_records
from cidadao.sources.sanctions import SanctionsFormatError, read_sanctions_counted


@dataclass
class InputStats:
    contratacoes: int = 0
    contratos: int = 0
    unrecognised: int = 0  # JSON objects that are neither (no PNCP field)
    rejected: list[str] = field(default_factory=list)  # unreadable pieces, with their reason


def _is_jsonl_of_records(path: Path) -> bool:
    """JSON Lines whose first line is a record (not a response page): the native polars reader applies."""
    with path.open("rb") as stream:
        if detect_format(stream, path.suffix.lower()) != "jsonl":
            return False
        stream.seek(0)
        try:
            first = orjson.loads(stream.readline())
        except orjson.JSONDecodeError:
            return False
    return isinstance(first, dict) and "data" not in first


def read_input(path: Path, stats: InputStats) -> KindFrames:
    """Typed records of one input file by kind; unusable pieces are counted in `stats`."""
    split: KindFrames | None = None
    if _is_jsonl_of_records(path):
        try:
            split = split_ndjson(path)
        except pl.exceptions.PolarsError:
            split = None  # a malformed line somewhere: the tolerant reader reports it precisely
    if split is None:
        raws = []
        for item in read_records(path):
            if isinstance(item, Rejection):
                stats.rejected.append(f"{path.name}: {item.reason}")
            else:
                raws.append(item)
        split = split_kinds([frame_from_raw(raws)])
    stats.contratacoes += split.contratacoes.height
    stats.contratos += split.contratos.height
    stats.unrecognised += split.unrecognised
    return split


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _summary(result: EngineResult) -> Table:
    severities = [severity.value for severity in Severity]
    table = Table("rule", *severities, "total", "skipped", "seconds", title="red flags")
    for rule in sorted(result.elapsed):
        per_rule = result.per_rule.get(rule)
        counts = Counter(finding.severity.value for finding in per_rule.findings) if per_rule else Counter()
        cells = [str(counts.get(severity, 0)) for severity in severities]
        total = str(sum(counts.values())) if per_rule else "[red]failed[/]"
        skipped = str(per_rule.skipped) if per_rule else "-"
        table.add_row(rule, *cells, total, skipped, f"{result.elapsed[rule]:.2f}")
    totals = Counter(finding.severity.value for finding in result.findings)
    table.add_row("all", *(str(totals.get(s, 0)) for s in severities), str(len(result.findings)), "", "")
    return table


@app.command("analyse")
def analyse(
    inputs: list[Path] = typer.Argument(
        ..., help="PNCP contratações/contratos: JSON Lines, JSON array, page, CSV."
    ),
    sanctions: list[Path] = typer.Option([], "--sanctions", help="CEIS/CNEP CSV download or API JSON."),
    out: Path | None = typer.Option(
        None, "--out", help="Write findings as JSON Lines here (default: stdout)."
    ),
    rules: str | None = typer.Option(None, "--rules", help="Comma-separated rule ids (default: all)."),
    config: Path | None = typer.Option(None, "--config", help="redflags.toml with parameter overrides."),
) -> None:
    """Run the red-flag indicators over files, offline; one finding per line, summary at the end."""
    selected = [rule.strip() for rule in rules.split(",") if rule.strip()] if rules else None
    try:
        rules_config = RulesConfig.load(config or settings().redflags_config)
        for rule in selected or ():
            rules_config.params(rule)
    except RulesConfigError as error:
        raise _fail(str(error)) from None

    stats = InputStats()
    frames: list[KindFrames] = []
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("reading", total=len(inputs) + len(sanctions))
        for path in inputs:
            progress.update(task, description=f"reading {path.name}")
            try:
                frames.append(read_input(path, stats))
            except OSError as error:
                raise _fail(f"cannot read {path}: {error.strerror or error}") from None
            progress.advance(task)
        sanction_frames = []
        for path in sanctions:
            progress.update(task, description=f"reading {path.name}")
            try:
                frame, masked = read_sanctions_counted(path)
            except (OSError, SanctionsFormatError, pl.exceptions.PolarsError) as error:
                raise _fail(f"cannot read sanctions {path}: {error}") from None
            if masked:
                err_console.print(
                    f"{path.name}: {masked} sanction(s) with a masked or blank id ignored", soft_wrap=True
                )
            sanction_frames.append(frame)
            progress.advance(task)
        if stats.contratacoes + stats.contratos == 0:
            reasons = "; ".join(stats.rejected[:3]) or "no PNCP contratação or contrato found"
            raise _fail(f"no usable record in the input: {reasons}")
        progress.update(task, description="running indicators")
        data = dataset_from_frames(
            pl.concat([split.contratacoes for split in frames], how="vertical_relaxed"),
            pl.concat([split.contratos for split in frames], how="vertical_relaxed"),
            pl.concat(sanction_frames) if sanction_frames else None,
        )
        try:
            result = run_rules(data, selected, rules_config)
        except RulesConfigError as error:
            raise _fail(str(error)) from None

    with ExitStack() as stack:
        target: IO[bytes] = stack.enter_context(out.open("wb")) if out else sys.stdout.buffer
        for finding in result.findings:
            target.write(orjson.dumps(finding.as_dict()) + b"\n")
        target.flush()

    report = console if out else err_console
    report.print(
        f"{stats.contratacoes} contratações, {stats.contratos} contratos"
        + (f", {stats.unrecognised} unrecognised objects" if stats.unrecognised else "")
        + (f", {len(stats.rejected)} unreadable pieces" if stats.rejected else ""),
        soft_wrap=True,
    )
    for reason in stats.rejected[:5]:
        report.print(f"  unreadable: {reason}", soft_wrap=True, markup=False)
    report.print(_summary(result))
    if result.errors:
        for rule, message in result.errors.items():
            err_console.print(f"[bold red]rule {rule} failed:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(1)


@app.command("rules")
def list_rules() -> None:
    """List the red-flag indicators with their parameters and legal basis."""
    for rule in sorted(REGISTRY):
        indicator = REGISTRY[rule]
        console.print(
            f"[bold]{rule}[/] v{indicator.version} ({indicator.severity.value}, {indicator.scope}): "
            f"{indicator.title}",
            highlight=False,
        )
        console.print(f"  {indicator.description}", highlight=False)
        console.print(f"  base legal: {indicator.legal_basis or '(nenhuma; literatura)'}", highlight=False)
        console.print(f"  referência: {indicator.reference}", highlight=False)
        parameters = ", ".join(f"{name} = {value!r}" for name, value in indicator.defaults.items())
        console.print(f"  parâmetros: {parameters or '(nenhum)'}", highlight=False)
