"""Store access as plain functions over a Session: the caller owns the transaction.

Records are upserted in bulk and idempotently: an unchanged record (same content hash and `dataAtualizacao`)
is not written at all, a new or changed one is written and flagged `needs_analysis`. PostgreSQL takes the
fast path (COPY into a temporary staging table, then one INSERT ... ON CONFLICT ... RETURNING); SQLite runs
the same upsert through executemany.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, ColumnElement, and_, bindparam, cast, column, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from cidadao.domain.records import RECORD_COLUMNS, Finding, Record, Rejection
from cidadao.store.models import (
    BuyerRow,
    FindingRow,
    IngestionRunRow,
    QuarantineRow,
    RecordRow,
    SupplierRow,
    WatermarkRow,
)

# Typed columns plus the JSON and provenance columns every upsert writes.
WRITTEN_COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, "warnings", "raw", "source")
_RUN_COUNTERS = ("fetched", "ingested", "updated", "unchanged", "quarantined", "findings", "alerts")


@dataclass(slots=True)
class UpsertResult:
    """Control numbers written by one upsert; `unchanged` counts records that were already stored as is."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


def upsert_records(
    session: Session, records: Sequence[Record], source: str, *, expect_new: bool = False
) -> UpsertResult:
    """Insert new records, update changed ones (flagging them for re-analysis), skip unchanged ones.

    A record changes when its content hash or `dataAtualizacao` differs from the stored one; an older
    `dataAtualizacao` than the stored one never overwrites newer data (re-importing an old file is a no-op).
    Buyers and suppliers of the written records are upserted too. With `expect_new` (say, the batches before
    were all new) PostgreSQL first tries to COPY every record without looking up stored versions; one stored
    already makes that COPY fail as a whole, and the records take the usual path.
    """
    unique = _newest_per_control_number(records)
    if not unique:
        return UpsertResult()
    postgres = session.get_bind().dialect.name == "postgresql"
    if expect_new and postgres and _copy_fresh(session, unique, source):
        written = [(record.control_number, True) for record in unique]
    else:
        stored = _stored_versions(session, [record.control_number for record in unique])
        # Re-fetches are mostly unchanged: skip them here instead of shipping them to the database.
        pending = [record for record in unique if _may_change(record, stored.get(record.control_number))]
        if not pending:
            written = []
        elif postgres:
            written = _upsert_records_postgresql(session, pending, source, stored.keys())
        else:
            written = _upsert_records_generic(session, pending, source, stored.keys())
    inserted = [number for number, is_new in written if is_new]
    updated = [number for number, is_new in written if not is_new]
    changed = set(inserted).union(updated)
    upsert_parties(session, [record for record in unique if record.control_number in changed])
    # A duplicate inside the batch counts as unchanged, so the counts add up to the records given.
    return UpsertResult(inserted, updated, len(records) - len(written))


def _newest_per_control_number(records: Sequence[Record]) -> list[Record]:
    # ON CONFLICT cannot touch the same row twice in one statement. As across batches, a later version wins
    # unless its dataAtualizacao is older than the one kept.
    newest: dict[str, Record] = {}
    for record in records:
        kept = newest.get(record.control_number)
        if kept is None or not _older(record, kept.source_updated_at):
            newest[record.control_number] = record
    return list(newest.values())


def _key_in(session: Session, column: Any, keys: list[str]) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        # One parameter instead of thousands of expanded IN parameters: the keys as one JSON array, which
        # orjson writes far faster than psycopg adapts a Python list to a text[] (any character is safe).
        listed = cast(bindparam("keys", orjson.dumps(keys).decode()), JSON)
        return column.in_(select(func.json_array_elements_text(listed)).scalar_subquery())  # type: ignore[no-any-return]
    return column.in_(keys)  # type: ignore[no-any-return]


def _stored_versions(session: Session, numbers: list[str]) -> dict[str, tuple[str, datetime | None]]:
    rows = session.execute(
        select(RecordRow.control_number, RecordRow.content_hash, RecordRow.source_updated_at).where(
            _key_in(session, RecordRow.control_number, numbers)
        )
    )
    return {number: (digest, updated) for number, digest, updated in rows}


def _may_change(record: Record, stored: tuple[str, datetime | None] | None) -> bool:
    """Python twin of the upsert's WHERE clause, which still decides under concurrent writers."""
    if stored is None:
        return True
    digest, updated = stored
    if _older(record, updated):
        return False
    return (digest, updated) != (record.content_hash, record.source_updated_at)


def _older(record: Record, updated: datetime | None) -> bool:
    return updated is not None and record.source_updated_at is not None and record.source_updated_at < updated


def _row_values(record: Record, source: str) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in RECORD_COLUMNS}
    values["kind"] = record.kind.value
    values["warnings"] = record.warnings or None
    values["raw"] = record.raw
    values["source"] = source
    return values


def _changed_condition(stored: Any, incoming: Any) -> ColumnElement[bool]:
    """SQL condition under which an incoming version replaces the stored row."""
    differs = or_(
        stored.content_hash != incoming.content_hash,
        stored.source_updated_at.is_distinct_from(incoming.source_updated_at),
    )
    not_older = or_(
        stored.source_updated_at.is_(None),
        incoming.source_updated_at.is_(None),
        incoming.source_updated_at >= stored.source_updated_at,
    )
    return and_(differs, not_older)


def _update_set(excluded: Any) -> dict[str, Any]:
    values: dict[str, Any] = {name: excluded[name] for name in WRITTEN_COLUMNS}
    values["needs_analysis"] = True
    values["last_changed_at"] = func.now()
    return values


def _upsert_records_generic(
    session: Session, records: list[Record], source: str, existing: Collection[str]
) -> list[tuple[str, bool]]:
    # SQLite serialises writers (BEGIN IMMEDIATE), so what existed when read still exists at the upsert.
    insert = sqlite.insert(RecordRow)
    stmt = insert.on_conflict_do_update(
        index_elements=[RecordRow.control_number],
        set_=_update_set(insert.excluded),
        where=_changed_condition(RecordRow, insert.excluded),
    ).returning(RecordRow.control_number)
    rows = [{**_row_values(record, source), "needs_analysis": True} for record in records]
    written = session.scalars(stmt, rows).all()
    return [(number, number not in existing) for number in written]


_STAGE = "pg_temp.records_stage"


def _upsert_records_postgresql(
    session: Session, records: list[Record], source: str, existing: Collection[str]
) -> list[tuple[str, bool]]:
    fresh = [record for record in records if record.control_number not in existing]
    # Should a concurrent writer have stored one of the fresh records meanwhile, every record takes the
    # upsert path instead.
    if fresh and _copy_fresh(session, fresh, source):
        known = [record for record in records if record.control_number in existing]
        inserted = [(record.control_number, True) for record in fresh]
        return inserted + _upsert_staged(session, known, source)
    return _upsert_staged(session, records, source)


def _copy_fresh(session: Session, records: list[Record], source: str) -> bool:
    """COPY records not stored yet straight into `records`; False, with nothing written, when the unique
    key refuses one of them."""
    try:
        with session.begin_nested():
            _copy_records(session, "records", records, source)
    except IntegrityError:
        return False
    return True


def _copy_records(session: Session, table: str, records: list[Record], source: str) -> None:
    statement = f"COPY {table} ({', '.join(WRITTEN_COLUMNS)}) FROM STDIN"
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            # A few hundred kB at a time: PostgreSQL parses one chunk while the next is formatted.
            end = f"\t{source.translate(_ESCAPES)}\n".encode()
            for start in range(0, len(records), _COPY_CHUNK):
                copy.write(
                    b"".join([copy_line(record, end) for record in records[start : start + _COPY_CHUNK]])
                )
    except psycopg.Error as error:
        # Raised like any SQLAlchemy statement error, so callers handle one exception family.
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _upsert_staged(session: Session, records: list[Record], source: str) -> list[tuple[str, bool]]:
    if not records:
        return []
    columns = ", ".join(WRITTEN_COLUMNS)
    session.execute(
        text(
            f"CREATE TEMP TABLE IF NOT EXISTS records_stage ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM records WITH NO DATA"
        )
    )
    session.execute(text(f"TRUNCATE {_STAGE}"))
    _copy_records(session, _STAGE, records, source)
    updates = ", ".join(f"{name} = excluded.{name}" for name in WRITTEN_COLUMNS)
    sql = f"""
        INSERT INTO records ({columns}, needs_analysis, last_changed_at)
        SELECT {columns}, true, now() FROM {_STAGE}
        ON CONFLICT (control_number) DO UPDATE
           SET {updates}, needs_analysis = true, last_changed_at = now()
         WHERE (records.content_hash <> excluded.content_hash
                OR records.source_updated_at IS DISTINCT FROM excluded.source_updated_at)
           AND (records.source_updated_at IS NULL OR excluded.source_updated_at IS NULL
                OR excluded.source_updated_at >= records.source_updated_at)
        RETURNING control_number, xmax = 0
    """  # xmax = 0 only on a freshly inserted tuple: tells inserts from updates in one round trip.
    return [(number, bool(is_new)) for number, is_new in session.execute(text(sql))]


_COPY_CHUNK = 100  # records per write during a COPY
_TYPED_VALUES = attrgetter(*RECORD_COLUMNS)  # one C call for the typed columns
_NULL = "\\N"
# COPY text format: a backslash, tab or line break inside a value is written as a backslash escape.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_line(record: Record, end: bytes) -> bytes:
    """A record as one line of COPY's text format, in WRITTEN_COLUMNS order; `end` is the escaped `source`
    with its line break.

    Formatted here rather than by psycopg's `write_row`, which adapts each of the 40 values one by one:
    `str()` of the typed values is what PostgreSQL reads back (the kind's value, ISO dates, plain decimals,
    True/False), and the raw JSON goes in as the source's bytes when the reader kept them.
    """
    values = _TYPED_VALUES(record)
    fields = [_NULL if value is None else str(value) for value in values]
    line = "\t".join(fields)
    # Escapes are rare in the typed columns: look for them once on the whole line, not value by value.
    if (
        line.count("\\") != values.count(None)
        or line.count("\t") != len(fields) - 1
        or "\n" in line
        or "\r" in line
    ):
        line = "\t".join(_NULL if value is None else str(value).translate(_ESCAPES) for value in values)
    warnings = orjson.dumps(record.warnings).decode().translate(_ESCAPES) if record.warnings else _NULL
    raw = (record.raw_json or orjson.dumps(record.raw)).replace(b"\\", b"\\\\")
    # orjson never writes tabs or line breaks, but whitespace between a source's tokens may be any of them.
    if b"\t" in raw or b"\n" in raw or b"\r" in raw:
        raw = raw.replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return b"%s\t%s\t%s%s" % (line.encode(), warnings.encode(), raw, end)


def _dialect_insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# Per party table: its key column, the Record field holding the key, and its other columns' Record fields.
_PARTIES: tuple[tuple[Any, str, str, dict[str, str]], ...] = (
    (
        BuyerRow,
        "cnpj",
        "buyer_cnpj",
        {"name": "buyer_name", "sphere": "sphere", "power": "power", "uf": "uf"},
    ),
    (
        SupplierRow,
        "supplier_id",
        "supplier_id",
        {"name": "supplier_name", "supplier_type": "supplier_type", "id_valid": "supplier_id_valid"},
    ),
)


def upsert_parties(session: Session, records: Iterable[Record]) -> None:
    """Buyers (every record) and suppliers (contratos) as last seen; known names are never blanked.

    The same buyers and suppliers come back batch after batch: only new ones and known ones with a
    different non-null value are written.
    """
    records = list(records)
    postgres = session.get_bind().dialect.name == "postgresql"
    for table, key, key_field, fields in _PARTIES:
        key_of, values_of = attrgetter(key_field), attrgetter(*fields.values())
        latest = {number: record for record in records if (number := key_of(record))}
        if latest:
            incoming = {number: values_of(record) for number, record in latest.items()}
            (_upsert_parties_postgresql if postgres else _upsert_parties_generic)(
                session, table.__table__, key, list(fields), incoming
            )


def _keep_known(stmt: Any, table: Any, key: str, names: list[str]) -> Any:
    """The party upsert: a null incoming value keeps the stored one."""
    keep_known = {name: func.coalesce(stmt.excluded[name], table.c[name]) for name in names}
    return stmt.on_conflict_do_update(index_elements=[key], set_={**keep_known, "updated_at": func.now()})


def _upsert_parties_postgresql(
    session: Session, table: Any, key: str, names: list[str], incoming: dict[str, tuple[Any, ...]]
) -> None:
    # One statement: the rows as a JSON array, compared with the stored ones inside PostgreSQL, so that
    # neither the stored rows nor the unchanged ones travel.
    columns = (key, *names)
    rows = [dict(zip(columns, (number, *values), strict=True)) for number, values in incoming.items()]
    listed = func.json_to_recordset(cast(bindparam("rows", orjson.dumps(rows).decode()), JSON))
    derived = listed.table_valued(*(column(name, table.c[name].type) for name in columns))
    new = derived.render_derived(name="incoming", with_types=True)
    differs = [and_(new.c[name].is_not(None), new.c[name].is_distinct_from(table.c[name])) for name in names]
    changed = (
        select(*(new.c[name] for name in columns))
        .outerjoin(table, table.c[key] == new.c[key])
        .where(or_(table.c[key].is_(None), *differs))
    )
    session.execute(
        _keep_known(postgresql.insert(table).from_select([key, *names], changed), table, key, names)
    )


def _upsert_parties_generic(
    session: Session, table: Any, key: str, names: list[str], incoming: dict[str, tuple[Any, ...]]
) -> None:
    query = select(table.c[key], *(table.c[name] for name in names)).where(
        _key_in(session, table.c[key], list(incoming))
    )
    stored = {row[0]: tuple(row[1:]) for row in session.execute(query).all()}
    pending = [
        {key: number, **dict(zip(names, values, strict=True))}
        for number, values in incoming.items()
        if (known := stored.get(number)) is None
        or (
            values != known
            and any(new is not None and new != old for new, old in zip(values, known, strict=True))
        )
    ]
    if pending:
        # Core, not the ORM bulk path: far less overhead.
        session.execute(_keep_known(sqlite.insert(table), table, key, names), pending)


def quarantine(
    session: Session, rejections: Iterable[Rejection], source: str, run_id: int | None = None
) -> int:
    """Keep unusable records with their reason; the payload is stored verbatim as text."""
    rows = [
        {
            "run_id": run_id,
            "source": source,
            "control_number": (rejection.control_number or "")[:64] or None,
            "reason": rejection.reason,
            "payload": _payload_text(rejection.raw),
        }
        for rejection in rejections
    ]
    if rows:
        session.execute(_dialect_insert(session, QuarantineRow.__table__), rows)
    return len(rows)


def _payload_text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    try:
        return orjson.dumps(raw, default=str).decode()
    except TypeError:
        return repr(raw)


def start_run(
    session: Session,
    source: str,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> int:
    run = IngestionRunRow(
        source=source,
        window_start=window_start,
        window_end=window_end,
        status="running",
        **dict.fromkeys(_RUN_COUNTERS, 0),
    )
    session.add(run)
    session.flush()
    return run.id


def add_run_counts(session: Session, run_id: int, **counts: int) -> None:
    """Add to a run's counters (fetched, ingested, updated, unchanged, quarantined, findings, alerts)."""
    unknown = set(counts) - set(_RUN_COUNTERS)
    if unknown:
        raise ValueError(f"unknown run counters: {sorted(unknown)}")
    if any(counts.values()):
        table = IngestionRunRow.__table__.c
        session.execute(
            update(IngestionRunRow)
            .where(IngestionRunRow.id == run_id)
            .values({table[name]: table[name] + amount for name, amount in counts.items() if amount})
        )


def finish_run(session: Session, run_id: int, status: str, error: str | None = None) -> None:
    session.execute(
        update(IngestionRunRow)
        .where(IngestionRunRow.id == run_id)
        .values(status=status, error=error, finished_at=func.now())
    )


def get_watermark(session: Session, source: str) -> WatermarkRow | None:
    return session.get(WatermarkRow, source, populate_existing=True)


def save_watermark(
    session: Session, source: str, position: datetime, cursor: dict[str, Any] | None = None
) -> None:
    """Set a source's position and in-window cursor (None once the window is complete)."""
    stmt = _dialect_insert(session, WatermarkRow).values(source=source, position=position, cursor=cursor)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[WatermarkRow.source],
            set_={"position": position, "cursor": stmt.excluded.cursor, "updated_at": func.now()},
        )
    )


def save_findings(session: Session, findings: Iterable[Finding], run_id: int | None) -> list[int]:
    """Store findings, skipping any already stored for the same record, rule and rule version.

    Returns the ids of the newly inserted findings only. Buyer, supplier, UF and value are copied from
    the flagged record so that listings filter without joins.
    """
    unique = list({(f.record, f.rule, f.rule_version): f for f in findings}.values())
    if not unique:
        return []
    context = {
        row.control_number: row
        for row in session.execute(
            select(
                RecordRow.control_number,
                RecordRow.buyer_cnpj,
                RecordRow.supplier_id,
                RecordRow.uf,
                func.coalesce(
                    RecordRow.value_global,
                    RecordRow.value_initial,
                    RecordRow.value_homologated,
                    RecordRow.value_estimated,
                ).label("value"),
            ).where(RecordRow.control_number.in_({f.record for f in unique}))
        )
    }
    rows = []
    for finding in unique:
        record = context.get(finding.record)
        rows.append(
            {
                **finding.as_dict(),
                "status": "new",
                "buyer_cnpj": record.buyer_cnpj if record else None,
                "supplier_id": record.supplier_id if record else None,
                "uf": record.uf if record else None,
                "value": record.value if record else None,
                "run_id": run_id,
            }
        )
    stmt = (
        _dialect_insert(session, FindingRow.__table__)
        .on_conflict_do_nothing(index_elements=["record", "rule", "rule_version"])
        .returning(FindingRow.__table__.c.id)
    )
    return list(session.scalars(stmt, rows))


def record_summary(session: Session) -> list[tuple[str, int | None, str | None, str | None, int]]:
    """Stored records by kind, modalidade and UF, largest groups first: (kind, id, name, uf, count)."""
    count = func.count().label("records")
    rows = session.execute(
        select(
            RecordRow.kind,
            RecordRow.modalidade_id,
            func.max(RecordRow.modalidade_name),
            RecordRow.uf,
            count,
        )
        .group_by(RecordRow.kind, RecordRow.modalidade_id, RecordRow.uf)
        .order_by(count.desc(), RecordRow.kind, RecordRow.uf)
    )
    return [(kind, modalidade, name, uf, int(total)) for kind, modalidade, name, uf, total in rows]
