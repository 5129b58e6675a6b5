"""Findings: filtered keyset-paginated list (JSON or CSV), detail with evidence and records, triage."""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import hashlib
import io
from datetime import UTC, datetime, time
from enum import StrEnum
from functools import lru_cache
from time import monotonic
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Float,
    Select,
    bindparam,
    cast,
    insert,
    select,
    tuple_,
    update,
)
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cidadao.api import pgfast
from cidadao.api.deps import EngineDep, ReadEngineDep, Reader, Writer
from cidadao.api.errors import ApiError, bad_param, parse_day
from cidadao.api.query import parse_query, query_parameters
from cidadao.api.records import (
    AROUND_FINDING,
    SUMMARY_FIELDS,
    RecordSummary,
    records_around,
    summary_of,
)
from cidadao.api.responses import json_response, utc
from cidadao.domain.records import FindingStatus, Severity
from cidadao.store.models import FindingEventRow, FindingRow

router = APIRouter(prefix="/v1", tags=["findings"])

MAX_ID = 2**63 - 1
RULE_PATTERN = r"^[A-Za-z0-9_.-]{1,48}$"
CNPJ_PATTERN = r"^[0-9A-Z]{12}[0-9]{2}$"  # numeric or alphanumeric (2026) CNPJ
SUPPLIER_PATTERN = r"^[0-9A-Za-z]{1,32}$"
UF_PATTERN = r"^[A-Za-z]{2}$"
NO_NUL = r"^[^\x00]*$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
RuleId = Annotated[str, StringConstraints(pattern=RULE_PATTERN)]

_LIST_COLUMNS = (
    FindingRow.id,
    FindingRow.record,
    FindingRow.rule,
    FindingRow.rule_version,
    FindingRow.severity,
    FindingRow.score,
    FindingRow.message,
    FindingRow.legal_basis,
    FindingRow.status,
    FindingRow.buyer_cnpj,
    FindingRow.supplier_id,
    FindingRow.uf,
    cast(FindingRow.value, Float).label("value"),  # a float from the driver, no Decimal round trip
    FindingRow.created_at,
    FindingRow.updated_at,
)
_FIELDS = tuple(column.key for column in _LIST_COLUMNS)
_TIMESTAMPS = (_FIELDS.index("created_at"), _FIELDS.index("updated_at"))


class FindingSort(StrEnum):
    NEWEST = "-id"
    OLDEST = "id"
    SCORE_DESC = "-score"
    SCORE_ASC = "score"


class FindingSummary(BaseModel):
    id: int
    record: str
    rule: str
    rule_version: str
    severity: Severity
    score: float
    message: str
    legal_basis: str | None
    status: FindingStatus
    buyer_cnpj: str | None
    supplier_id: str | None
    uf: str | None
    value: float | None
    created_at: datetime
    updated_at: datetime


class FindingPage(BaseModel):
    items: list[FindingSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class FindingEvent(BaseModel):
    actor: str
    from_status: str
    to_status: str
    note: str | None
    created_at: datetime


class FindingDetail(FindingSummary):
    evidence: dict[str, Any]
    run_id: int | None
    events: list[FindingEvent]
    records: list[RecordSummary] = Field(description="the flagged record, then related ones")


class FindingQuery(BaseModel):
    """Query parameters of the list (see query.py for how they are read and documented)."""

    model_config = ConfigDict(extra="ignore")

    rule: list[RuleId] | None = Field(default=None, description="indicator id; repeat for several")
    severity: list[Severity] | None = None
    status: list[FindingStatus] | None = None
    uf: str | None = Field(default=None, pattern=UF_PATTERN)
    buyer_cnpj: str | None = Field(default=None, pattern=CNPJ_PATTERN)
    supplier: str | None = Field(default=None, pattern=SUPPLIER_PATTERN, description="CNPJ/CPF")
    date_from: str | None = Field(default=None, pattern=ISO_DATE, description="created on or after, UTC")
    date_to: str | None = Field(default=None, pattern=ISO_DATE, description="created on or before, UTC")
    min_value: float | None = Field(default=None, ge=0, le=1e15, allow_inf_nan=False)
    sort: FindingSort = FindingSort.NEWEST
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=512)
    format: Literal["json", "csv"] = "json"


class Triage(BaseModel):
    status: FindingStatus
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


def _item(row: Any) -> dict[str, Any]:
    item = dict(zip(_FIELDS, row, strict=True))
    if item["created_at"].tzinfo is None:  # SQLite; PostgreSQL returns aware timestamps
        item["created_at"], item["updated_at"] = utc(item["created_at"]), utc(item["updated_at"])
    return item


def _encode_cursor(sort: FindingSort, key: list[Any], filters: str) -> str:
    raw = orjson.dumps({"s": sort.value, "k": key, "f": filters})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: FindingSort, filters: str) -> list[Any]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key = data["k"]
        valid = data["s"] == sort.value and isinstance(key, list)
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad_param("cursor", "not a cursor returned by this endpoint") from None
    if not valid or data.get("f") != filters:
        raise bad_param("cursor", "cursor belongs to another sort order or other filters")
    scored = sort in (FindingSort.SCORE_DESC, FindingSort.SCORE_ASC)
    shape_ok = len(key) == (2 if scored else 1) and isinstance(key[-1], int) and 0 < key[-1] <= MAX_ID
    if not shape_ok or (scored and not isinstance(key[0], int | float)):
        raise bad_param("cursor", "malformed cursor")
    return list(key)


def _digest(filters: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# One condition per filter, with named parameters: statements are built once per filter shape (below)
# and then only executed with new values, which skips SQLAlchemy's statement construction per request.
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "rule": FindingRow.rule.in_(bindparam("rule", expanding=True)),
    "severity": FindingRow.severity.in_(bindparam("severity", expanding=True)),
    "status": FindingRow.status.in_(bindparam("status", expanding=True)),
    "uf": FindingRow.uf == bindparam("uf"),
    "buyer_cnpj": FindingRow.buyer_cnpj == bindparam("buyer_cnpj"),
    "supplier": FindingRow.supplier_id == bindparam("supplier"),
    "date_from": FindingRow.created_at >= bindparam("date_from", type_=DateTime(timezone=True)),
    "date_to": FindingRow.created_at <= bindparam("date_to", type_=DateTime(timezone=True)),
    "min_value": FindingRow.value >= bindparam("min_value", type_=Float()),
}
_AFTER = tuple_(bindparam("after_score", type_=Float()), bindparam("after_id", type_=BigInteger()))
_KEYSET: dict[FindingSort, ColumnElement[bool]] = {
    FindingSort.NEWEST: FindingRow.id < bindparam("after_id", type_=BigInteger()),
    FindingSort.OLDEST: FindingRow.id > bindparam("after_id", type_=BigInteger()),
    FindingSort.SCORE_DESC: tuple_(FindingRow.score, FindingRow.id) < _AFTER,
    FindingSort.SCORE_ASC: tuple_(FindingRow.score, FindingRow.id) > _AFTER,
}
_ORDER = {
    FindingSort.NEWEST: (FindingRow.id.desc(),),
    FindingSort.OLDEST: (FindingRow.id.asc(),),
    FindingSort.SCORE_DESC: (FindingRow.score.desc(), FindingRow.id.desc()),
    FindingSort.SCORE_ASC: (FindingRow.score.asc(), FindingRow.id.asc()),
}


class PageCache:
    """Finished list answers by query string, kept `ttl` seconds (API_LIST_CACHE_SECONDS).

    Many readers poll the same first pages; within a second they get the same bytes without a query.
    Cursors are keysets, so a cached page never shifts pagination; triage clears this process's entries.
    """

    def __init__(self, ttl: float, max_entries: int = 2048) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._entries: dict[bytes, tuple[float, Response]] = {}
        self.pending: dict[bytes, asyncio.Future[Response]] = {}  # refreshes in flight, by key

    def get(self, key: bytes) -> Response | None:
        entry = self._entries.get(key) if self.ttl else None
        if entry is None or entry[0] < monotonic():
            return None
        return entry[1]

    def put(self, key: bytes, response: Response) -> None:
        if not self.ttl:
            return
        if len(self._entries) >= self._max:
            self._entries = {}  # crude but bounded; entries live about a second anyway
        self._entries[key] = (monotonic() + self.ttl, response)

    def clear(self) -> None:
        self._entries = {}


@lru_cache(maxsize=1024)
def _list_statement(shape: tuple[str, ...], sort: FindingSort, after: bool) -> Select[Any]:
    conditions = [_CONDITIONS[name] for name in shape] + ([_KEYSET[sort]] if after else [])
    return select(*_LIST_COLUMNS).where(*conditions).order_by(*_ORDER[sort]).limit(bindparam("limit"))


_EXPANDING = ("rule", "severity", "status")


def _pg_list(query: Select[Any], engine: Engine, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """SQL text and flat parameters for psycopg: list filters become one placeholder per value."""
    sql, _ = pgfast.compiled(query, engine)
    flat = {name: value for name, value in params.items() if name not in _EXPANDING}
    counts = []
    for name in _EXPANDING:
        values = params.get(name)
        if values is not None:
            counts.append((name, len(values)))
            flat.update((f"{name}_{i}", value) for i, value in enumerate(values))
    return pgfast.expand(sql, tuple(counts)), flat


def _csv_cell(value: Any) -> Any:
    # Spreadsheets execute cells starting with these characters as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_FIELDS)
    for item in items:
        writer.writerow([_csv_cell(item[name]) for name in _FIELDS])
    headers = {"Content-Disposition": 'attachment; filename="findings.csv"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get(
    "/findings",
    response_model=FindingPage,
    summary="Findings, newest first by default, with cursor pagination",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    openapi_extra={"parameters": query_parameters(FindingQuery)},
)
async def list_findings(request: Request, engine: ReadEngineDep, _principal: Reader) -> Response:
    # async so that a cache hit costs no thread-pool hop; the query itself runs in the pool. The cache is
    # keyed by the raw query string, which was valid when its answer was stored.
    cache: PageCache = request.app.state.page_cache
    key = request.scope["query_string"]
    cached = cache.get(key)
    if cached is not None:
        return cached
    if not cache.ttl:
        return await _list_response(request, engine)
    # One query per key at a time: when an entry expires, the requests that arrive while it is being
    # refreshed wait for that answer instead of all querying at once (they did, and it showed in p99).
    pending = cache.pending.get(key)
    if pending is not None:
        try:
            return await asyncio.shield(pending)
        except Exception:  # the refresh failed; this request tries on its own (and reports its own error)
            return await _list_response(request, engine)
    future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    cache.pending[key] = future
    try:
        response = await _list_response(request, engine)
    except BaseException as error:
        failure = error if isinstance(error, Exception) else RuntimeError("refresh cancelled")
        future.set_exception(failure)
        future.exception()  # retrieved: no "never retrieved" warning when nobody was waiting
        raise
    else:
        future.set_result(response)
        cache.put(key, response)
        return response
    finally:
        del cache.pending[key]


async def _list_response(request: Request, engine: Engine) -> Response:
    q = parse_query(request, FindingQuery)
    if pgfast.enabled(engine):  # psycopg's async connection: no thread-pool hop at all
        query, params, filters = _list_plan(q)
        rows = await pgfast.afetch(engine, *_pg_list(query, engine, params))
        response = _list_render(q, rows, filters)
    else:
        response = await run_in_threadpool(_list_page, q, engine)
    return response


def _list_plan(q: FindingQuery) -> tuple[Select[Any], dict[str, Any], str]:
    """The statement for this filter shape, its parameters and the filters' digest (for cursors)."""
    first = parse_day(q.date_from, "date_from") if q.date_from else None
    last = parse_day(q.date_to, "date_to") if q.date_to else None
    if first and last and first > last:
        raise bad_param("date_to", "before date_from")
    values: dict[str, Any] = {
        "rule": sorted(set(q.rule)) if q.rule else None,
        "severity": sorted({s.value for s in q.severity}) if q.severity else None,
        "status": sorted({s.value for s in q.status}) if q.status else None,
        "uf": q.uf.upper() if q.uf else None,
        "buyer_cnpj": q.buyer_cnpj,
        "supplier": q.supplier,
        "date_from": datetime.combine(first, time(), UTC) if first else None,
        "date_to": datetime.combine(last, time.max, UTC) if last else None,  # the whole day, even 9999-12-31
        "min_value": q.min_value,
    }
    params = {name: value for name, value in values.items() if value is not None}
    # Cursors carry a digest of the filters, so one cannot be replayed against a different query.
    filters = _digest(params)
    if q.cursor:
        key = _decode_cursor(q.cursor, q.sort, filters)
        params["after_id"] = key[-1]
        if len(key) == 2:
            params["after_score"] = float(key[0])
    query = _list_statement(tuple(name for name in _CONDITIONS if name in params), q.sort, bool(q.cursor))
    params["limit"] = q.limit + 1
    return query, params, filters


def _list_page(q: FindingQuery, engine: Engine) -> Response:
    query, params, filters = _list_plan(q)
    with engine.connect() as connection:
        rows = connection.execute(query, params).all()
    return _list_render(q, rows, filters)


def _list_render(q: FindingQuery, rows: Any, filters: str) -> Response:
    items = [dict(zip(_FIELDS, row, strict=True)) for row in rows[: q.limit]]
    if items and items[0]["created_at"].tzinfo is None:  # SQLite; PostgreSQL returns aware timestamps
        for item in items:
            item["created_at"], item["updated_at"] = utc(item["created_at"]), utc(item["updated_at"])
    next_cursor = None
    if len(rows) > q.limit:
        tail = items[-1]
        scored = q.sort in (FindingSort.SCORE_DESC, FindingSort.SCORE_ASC)
        next_cursor = _encode_cursor(q.sort, [tail["score"], tail["id"]] if scored else [tail["id"]], filters)
    if q.format == "csv":
        return _csv(items, next_cursor)
    return json_response({"items": items, "next_cursor": next_cursor})


FindingId = Annotated[int, Path(ge=1, le=MAX_ID)]


_DETAIL = select(*_LIST_COLUMNS, FindingRow.evidence, FindingRow.run_id).where(
    FindingRow.id == bindparam("id")
)
_EVENTS = (
    select(
        FindingEventRow.actor,
        FindingEventRow.from_status,
        FindingEventRow.to_status,
        FindingEventRow.note,
        FindingEventRow.created_at,
    )
    .where(FindingEventRow.finding_id == bindparam("id"))
    .order_by(FindingEventRow.id)
)
_EVENT_FIELDS = tuple(column.key for column in _EVENTS.selected_columns)


def _detail(connection: Connection, finding_id: int) -> dict[str, Any]:
    row = connection.execute(_DETAIL, {"id": finding_id}).first()
    if row is None:
        raise ApiError(404, f"finding {finding_id} not found", param="id", location="path")
    item = _item(row[: len(_FIELDS)])
    item["evidence"], item["run_id"] = row.evidence, row.run_id
    events = connection.execute(_EVENTS, {"id": finding_id})
    item["events"] = [{**event._mapping, "created_at": utc(event.created_at)} for event in events]
    item["records"] = records_around(connection, item["record"])
    return item


async def _detail_pg(engine: Engine, finding_id: int) -> dict[str, Any]:
    """`_detail` through psycopg's async connection (see pgfast), its three queries in one round trip."""
    statements = [pgfast.compiled(statement, engine) for statement in (_DETAIL, _EVENTS, AROUND_FINDING)]
    row, events, records = await pgfast.afetch_pipelined(
        engine, [(sql, {**defaults, "id": finding_id}) for sql, defaults in statements]
    )
    if not row:
        raise ApiError(404, f"finding {finding_id} not found", param="id", location="path")
    item = _item(row[0][: len(_FIELDS)])
    item["evidence"], item["run_id"] = row[0][len(_FIELDS)], row[0][len(_FIELDS) + 1]
    item["events"] = [
        {**dict(zip(_EVENT_FIELDS, event, strict=True)), "created_at": utc(event[-1])} for event in events
    ]
    item["records"] = [summary_of(dict(zip(SUMMARY_FIELDS, r, strict=True))) for r in records]
    return item


def _detail_sync(engine: Engine, finding_id: int) -> Response:
    with engine.connect() as connection:
        return json_response(_detail(connection, finding_id))


@router.get("/findings/{id}", response_model=FindingDetail, summary="One finding with evidence and records")
async def get_finding(id: FindingId, engine: ReadEngineDep, _principal: Reader) -> Response:
    if pgfast.enabled(engine):
        return json_response(await _detail_pg(engine, id))
    return await run_in_threadpool(_detail_sync, engine, id)


@router.patch("/findings/{id}", response_model=FindingDetail, summary="Triage a finding (audited)")
def triage_finding(
    request: Request, id: FindingId, body: Triage, engine: EngineDep, principal: Writer
) -> Response:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        current = connection.execute(
            select(FindingRow.status).where(FindingRow.id == id).with_for_update()
        ).scalar_one_or_none()
        if current is None:
            raise ApiError(404, f"finding {id} not found", param="id", location="path")
        connection.execute(
            update(FindingRow).where(FindingRow.id == id).values(status=body.status, updated_at=now)
        )
        request.app.state.page_cache.clear()
        connection.execute(
            insert(FindingEventRow).values(
                finding_id=id,
                actor=principal.name[:128],
                from_status=current,
                to_status=body.status.value,
                note=body.note,
                created_at=now,
            )
        )
        return json_response(_detail(connection, id))
