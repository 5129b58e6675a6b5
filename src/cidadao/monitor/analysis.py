"""Analyse what changed: the records flagged `needs_analysis` and the peer groups they touch.

Indicators of scope record/buyer/supplier see every record of the touched (buyer, year) groups and of the
touched suppliers, plus the contratações the loaded contratos belong to, so a new dispensa re-evaluates its
buyer-year group for `split_purchase` instead of the whole country. Indicators of scope `global` compare a
record with all others (e.g. national price distributions); they run over the whole table on their own
schedule (`global_analysis`, GLOBAL_ANALYSIS_INTERVAL_SECONDS) and in every `cidadao monitor --once`.

Findings, their alert outbox rows, the cleared `needs_analysis` flags and the run counters are written in one
transaction: a crash leaves either all of them or none, and a re-run finds the same records still flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import ColumnElement, Engine, Float, and_, cast, select, text, true, tuple_, update
from sqlalchemy.orm import Session

from cidadao.alerts.outbox import enqueue_alerts
from cidadao.config import Settings
from cidadao.domain.records import RECORD_COLUMNS, Finding
from cidadao.logs import get_logger
from cidadao.redflags.base import REGISTRY, SANCTIONS_SCHEMA
from cidadao.redflags.engine import RulesConfig, run_rules
from cidadao.redflags.frame import dataset_from_table
from cidadao.store.db import transaction
from cidadao.store.models import RecordRow, SanctionRow
from cidadao.store.repositories import add_run_counts, save_findings

log = get_logger(__name__)

# Bound IN lists and bound parameters (SQLite allows 32766 per statement).
_CHUNK = 500


@dataclass(slots=True)
class AnalysisStats:
    changed: int = 0  # records that needed analysis
    loaded: int = 0  # records analysed with them (their peer groups)
    findings: int = 0  # newly stored findings
    alerts: int = 0  # alert outbox rows written
    rule_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "changed": self.changed,
            "loaded": self.loaded,
            "findings": self.findings,
            "alerts": self.alerts,
            "rule_errors": self.rule_errors,
        }


_CLEAR_PG = text(
    "UPDATE records SET needs_analysis = false"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:hashes AS text[])) AS analysed(id, hash)"
    " WHERE records.id = analysed.id AND records.content_hash = analysed.hash"
)


def _column(name: str) -> ColumnElement[Any]:
    column = RecordRow.__table__.c[name]
    # Money is Decimal in the table and Float64 in the analysis frame.
    return cast(column, Float).label(name) if name.startswith("value_") else column.label(name)


_FRAME_COLUMNS = [_column(name) for name in RECORD_COLUMNS]


@lru_cache(maxsize=4)
def _rules_config(path: Path | None) -> RulesConfig:
    return RulesConfig.load(path)


def rules_by_scope(*, global_scope: bool) -> list[str]:
    return sorted(rule for rule, ind in REGISTRY.items() if (ind.scope == "global") == global_scope)


def _frame(session: Session, conditions: Sequence[ColumnElement[bool]]) -> pl.DataFrame:
    rows: dict[int, tuple[Any, ...]] = {}
    for condition in conditions:
        for row in session.execute(select(RecordRow.id, *_FRAME_COLUMNS).where(condition)):
            rows[row[0]] = tuple(row[1:])
    return pl.DataFrame(
        list(rows.values()), schema=list(RECORD_COLUMNS), orient="row", infer_schema_length=None
    )


def _sanctions(session: Session) -> pl.DataFrame:
    columns = [SanctionRow.__table__.c[name] for name in SANCTIONS_SCHEMA]
    rows = session.execute(select(*columns)).all()
    return pl.DataFrame(rows, schema=SANCTIONS_SCHEMA, orient="row")


def _chunks(items: Iterable[Any]) -> list[list[Any]]:
    values = list(items)
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _peer_conditions(
    pairs: set[tuple[str, int | None]], suppliers: set[str], purchases: set[str]
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    dated = {pair for pair in pairs if pair[1] is not None}
    undated = {buyer for buyer, year in pairs if year is None}
    conditions += [tuple_(RecordRow.buyer_cnpj, RecordRow.year).in_(chunk) for chunk in _chunks(dated)]
    conditions += [
        and_(RecordRow.buyer_cnpj.in_(chunk), RecordRow.year.is_(None)) for chunk in _chunks(undated)
    ]
    conditions += [RecordRow.supplier_id.in_(chunk) for chunk in _chunks(suppliers)]
    conditions += [RecordRow.control_number.in_(chunk) for chunk in _chunks(purchases)]
    return conditions


def _clear_flags(session: Session, analysed: Sequence[tuple[int, str]]) -> None:
    """Clear `needs_analysis` of records still as read: one changed meanwhile stays flagged for next time."""
    if not analysed:
        return
    if session.get_bind().dialect.name == "postgresql":
        # One statement over two arrays: IN lists of (id, hash) pairs cost a plan and a scan per chunk.
        ids, hashes = zip(*analysed, strict=True)
        session.execute(_CLEAR_PG, {"ids": list(ids), "hashes": list(hashes)})
        return
    for chunk in _chunks(analysed):
        session.execute(
            update(RecordRow)
            .where(RecordRow.id.in_([record_id for record_id, _ in chunk]))
            .where(tuple_(RecordRow.id, RecordRow.content_hash).in_(chunk))
            .values(needs_analysis=False)
            .execution_options(synchronize_session=False)
        )


def _write(
    engine: Engine,
    settings: Settings,
    findings: list[Finding],
    run_id: int | None,
    analysed: Sequence[tuple[int, str]],
    stats: AnalysisStats,
) -> None:
    """Findings + outbox + cleared flags + run counters: one transaction."""
    with transaction(engine) as session:
        ids = save_findings(session, findings, run_id)
        alerts = enqueue_alerts(session, ids, settings) if ids else 0
        _clear_flags(session, analysed)
        if run_id is not None:
            add_run_counts(session, run_id, findings=len(ids), alerts=alerts)
    stats.findings += len(ids)
    stats.alerts += alerts


def analyse_changed(engine: Engine, settings: Settings, run_id: int | None = None) -> AnalysisStats:
    """Run the record/buyer/supplier indicators over changed records and their peer groups."""
    stats = AnalysisStats()
    with transaction(engine) as session:
        changed = session.execute(
            select(
                RecordRow.id,
                RecordRow.content_hash,
                RecordRow.buyer_cnpj,
                RecordRow.year,
                RecordRow.supplier_id,
                RecordRow.purchase_control_number,
            ).where(RecordRow.needs_analysis)
        ).all()
        if not changed:
            return stats
        pairs = {(row.buyer_cnpj, row.year) for row in changed if row.buyer_cnpj}
        suppliers = {row.supplier_id for row in changed if row.supplier_id}
        purchases = {row.purchase_control_number for row in changed if row.purchase_control_number}
        orphans = [row.id for row in changed if not (row.buyer_cnpj or row.supplier_id)]
        conditions = _peer_conditions(pairs, suppliers, purchases)
        conditions += [RecordRow.id.in_(chunk) for chunk in _chunks(orphans)]
        frame = _frame(session, conditions)
        parents = set(frame["purchase_control_number"].drop_nulls().to_list()) - set(
            frame["control_number"].to_list()
        )
        if parents:
            frame = pl.concat(
                [frame, _frame(session, _peer_conditions(set(), set(), parents))], how="vertical_relaxed"
            )
        sanctions = _sanctions(session)
    stats.changed = len(changed)
    stats.loaded = frame.height
    result = run_rules(
        dataset_from_table(frame, sanctions),
        rules_by_scope(global_scope=False),
        _rules_config(settings.redflags_config),
    )
    stats.rule_errors = len(result.errors)
    _write(engine, settings, result.findings, run_id, [(row.id, row.content_hash) for row in changed], stats)
    log.info("analysis finished", run_id=run_id, **stats.as_dict())
    return stats


def analyse_where(
    engine: Engine,
    settings: Settings,
    conditions: Sequence[ColumnElement[bool]],
    rules: Sequence[str],
    run_id: int | None = None,
) -> AnalysisStats:
    """Run `rules` over the records matching any of `conditions` (flags are left as they are)."""
    stats = AnalysisStats()
    if not rules:
        return stats
    with transaction(engine) as session:
        frame = _frame(session, conditions)
        sanctions = _sanctions(session)
    stats.loaded = frame.height
    result = run_rules(dataset_from_table(frame, sanctions), rules, _rules_config(settings.redflags_config))
    stats.rule_errors = len(result.errors)
    _write(engine, settings, result.findings, run_id, [], stats)
    log.info("analysis finished", run_id=run_id, rules=len(rules), **stats.as_dict())
    return stats


def analyse_global(engine: Engine, settings: Settings, run_id: int | None = None) -> AnalysisStats:
    """Run the indicators of scope `global` over every stored record."""
    return analyse_where(engine, settings, [true()], rules_by_scope(global_scope=True), run_id)


def analyse_party(engine: Engine, settings: Settings, condition: ColumnElement[bool]) -> AnalysisStats:
    """Investigate one buyer or supplier now: its records and their counterparties' peer groups."""
    with transaction(engine) as session:
        matched = session.execute(
            select(RecordRow.buyer_cnpj, RecordRow.year, RecordRow.supplier_id).where(condition)
        ).all()
    pairs = {(row.buyer_cnpj, row.year) for row in matched if row.buyer_cnpj}
    suppliers = {row.supplier_id for row in matched if row.supplier_id}
    conditions = [condition, *_peer_conditions(pairs, suppliers, set())]
    stats = analyse_where(engine, settings, conditions, rules_by_scope(global_scope=False))
    stats.changed = len(matched)
    return stats
