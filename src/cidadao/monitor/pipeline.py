"""The monitor: one service that tasks, the CLI and the API call for a source and a window.

A pass = ingest (fetch, validate, quarantine, upsert; incremental by watermark with overlap) -> analyse what
changed and the peer groups it touches -> findings + alert outbox rows + cleared flags + run counters in one
transaction -> dispatch the outbox. Every step is idempotent, so a pass killed at any point and run again
leaves each record, finding and alert exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.dialects import postgresql, sqlite

from cidadao.alerts.dispatcher import dispatch_due
from cidadao.config import Settings
from cidadao.logs import get_logger
from cidadao.monitor.analysis import AnalysisStats, analyse_changed, analyse_global, analyse_party
from cidadao.monitor.ingest import (
    ENDPOINTS,
    TAIL_SOURCE,
    IngestFailed,
    IngestStats,
    PageClient,
    TailClient,
    ingest_file,
    ingest_pncp,
    ingest_pncp_tail,
)
from cidadao.redflags.base import SANCTIONS_SCHEMA
from cidadao.sources.sanctions import read_sanctions
from cidadao.store.db import transaction
from cidadao.store.models import RecordRow, SanctionRow
from cidadao.store.repositories import finish_run, start_run

log = get_logger(__name__)


@dataclass(slots=True)
class PassResult:
    run_id: int | None = None
    ingest: dict[str, int] = field(default_factory=dict)
    analysis: dict[str, int] = field(default_factory=dict)
    global_analysis: dict[str, int] = field(default_factory=dict)
    dispatch: dict[str, int] = field(default_factory=dict)
    sanctions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ingest": self.ingest,
            "analysis": self.analysis,
            "global_analysis": self.global_analysis,
            "dispatch": self.dispatch,
            "sanctions": self.sanctions,
        }


def run_pass(
    engine: Engine,
    settings: Settings,
    *,
    files: Sequence[Path] = (),
    sanctions: Sequence[Path] = (),
    endpoints: Sequence[str] = ENDPOINTS,
    start: date | None = None,
    end: date | None = None,
    client: PageClient | None = None,
    include_global: bool = False,
) -> PassResult:
    """One whole pass. With `files`, records are read from them as if fetched; otherwise from PNCP
    (incremental by watermark, or the dates [start, end] when `start` is given)."""
    result = PassResult()
    if sanctions:
        result.sanctions = load_sanctions(engine, sanctions)

    def ingest(run_id: int) -> IngestStats:
        if not files:
            return ingest_pncp(engine, settings, start, end, client, endpoints=endpoints, run=run_id)
        stats = IngestStats()
        for path in files:
            stats.add(ingest_file(engine, path, run=run_id))
        return stats

    return _run(engine, settings, "file" if files else "pncp", ingest, result, include_global=include_global)


def run_tail(
    engine: Engine,
    settings: Settings,
    *,
    endpoints: Sequence[str] = ENDPOINTS,
    client: TailClient | None = None,
    now: datetime | None = None,
) -> PassResult:
    """The fast path between full passes: fetch only the records PNCP appended today since the last poll
    (`ingest_pncp_tail`), then analyse, store findings and alerts, and dispatch exactly as a full pass.
    `now` (PNCP's naive local time) picks the day; by default, today."""
    return _run(
        engine,
        settings,
        TAIL_SOURCE,
        lambda run_id: ingest_pncp_tail(engine, settings, client, endpoints=endpoints, run=run_id, now=now),
        PassResult(),
    )


def _run(
    engine: Engine,
    settings: Settings,
    source: str,
    ingest: Callable[[int], IngestStats],
    result: PassResult,
    *,
    include_global: bool = False,
) -> PassResult:
    """Ingest under a new run, analyse what changed, finish the run, dispatch the outbox."""
    with transaction(engine) as session:
        run_id = start_run(session, source)
    result.run_id = run_id
    try:
        stats = ingest(run_id)
        analysis = analyse_changed(engine, settings, run_id)
        global_stats = analyse_global(engine, settings, run_id) if include_global else AnalysisStats()
    except BaseException as error:
        cause = error.__cause__ if isinstance(error, IngestFailed) and error.__cause__ else error
        try:
            with transaction(engine) as session:
                finish_run(session, run_id, "failed", f"{type(cause).__name__}: {cause}"[:2000])
        except Exception:
            log.warning("could not mark run failed", run_id=run_id, exc_info=True)
        raise
    with transaction(engine) as session:
        finish_run(session, run_id, "succeeded")
    result.ingest = stats.counts()
    result.analysis = analysis.as_dict()
    result.global_analysis = global_stats.as_dict()
    result.dispatch = dispatch_due(engine, settings, limit=1000).as_dict()
    log.info(
        "monitor pass finished", **{k: v for k, v in result.as_dict().items() if k != "run_id"}, run_id=run_id
    )
    return result


def load_sanctions(engine: Engine, paths: Sequence[Path]) -> int:
    """Store CEIS/CNEP sanctions read from files; idempotent (one row per list, id, start and category)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        for item in read_sanctions(path).iter_rows(named=True):
            identity = "|".join(
                str(item[name] or "") for name in ("sanction_list", "sanctioned_id", "start_date", "category")
            )
            key = hashlib.sha256(identity.encode()).hexdigest()[:40]
            rows[key] = {**item, "source_key": key}
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with transaction(engine) as session:
        for start in range(0, len(rows), 500):
            statement = insert(SanctionRow).values(list(rows.values())[start : start + 500])
            updated = {name: statement.excluded[name] for name in SANCTIONS_SCHEMA}
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[SanctionRow.source_key], set_={**updated, "updated_at": func.now()}
                )
            )
    return len(rows)


def investigate(engine: Engine, settings: Settings, kind: str, target: dict[str, Any]) -> dict[str, Any]:
    """Analyse one buyer, one supplier, or (fetching it first) one window of dates, now."""
    if kind == "window":
        passed = run_pass(
            engine, settings, start=date.fromisoformat(target["start"]), end=date.fromisoformat(target["end"])
        )
        return passed.as_dict()
    if kind == "buyer":
        stats = analyse_party(engine, settings, RecordRow.buyer_cnpj == target["cnpj"])
    elif kind == "supplier":
        stats = analyse_party(engine, settings, RecordRow.supplier_id == target["supplier_id"])
    else:
        raise ValueError(f"unknown investigation kind {kind!r}")
    dispatched = dispatch_due(engine, settings, limit=1000).as_dict()
    return {"records": stats.changed, "analysis": stats.as_dict(), "dispatch": dispatched}
