"""Findings: filtered keyset-paginated list (JSON or CSV), detail with evidence and records, triage."""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import ColumnElement, Connection, insert, select, tuple_, update
from starlette.responses import Response

from cidadao.api.deps import EngineDep, Reader, Writer
from cidadao.api.errors import ApiError, bad_param, parse_day
from cidadao.api.records import RecordSummary, record_summaries, related_records
from cidadao.api.responses import json_response, money, utc
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
    FindingRow.value,
    FindingRow.created_at,
    FindingRow.updated_at,
)
_FIELDS = tuple(column.key for column in _LIST_COLUMNS)


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


class Triage(BaseModel):
    status: FindingStatus
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


def _item(row: Any) -> dict[str, Any]:
    item = dict(zip(_FIELDS, row, strict=True))
    item["value"] = money(item["value"])
    item["created_at"] = utc(item["created_at"])
    item["updated_at"] = utc(item["updated_at"])
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


def _digest(*filters: Any) -> str:
    normal = [sorted(set(f)) if isinstance(f, list) else f for f in filters]
    return hashlib.sha256(orjson.dumps(normal, default=str)).hexdigest()[:16]


def _keyset(sort: FindingSort, key: list[Any]) -> ColumnElement[bool]:
    last_id = int(key[-1])
    if sort is FindingSort.NEWEST:
        return FindingRow.id < last_id
    if sort is FindingSort.OLDEST:
        return FindingRow.id > last_id
    pair, after = tuple_(FindingRow.score, FindingRow.id), tuple_(key[0], key[1])
    condition: ColumnElement[bool] = pair < after if sort is FindingSort.SCORE_DESC else pair > after
    return condition


_ORDER = {
    FindingSort.NEWEST: (FindingRow.id.desc(),),
    FindingSort.OLDEST: (FindingRow.id.asc(),),
    FindingSort.SCORE_DESC: (FindingRow.score.desc(), FindingRow.id.desc()),
    FindingSort.SCORE_ASC: (FindingRow.score.asc(), FindingRow.id.asc()),
}


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
)
def list_findings(
    engine: EngineDep,
    _principal: Reader,
    rule: Annotated[list[RuleId] | None, Query(description="indicator id; repeat for several")] = None,
    severity: Annotated[list[Severity] | None, Query()] = None,
    status: Annotated[list[FindingStatus] | None, Query()] = None,
    uf: Annotated[str | None, Query(pattern=UF_PATTERN)] = None,
    buyer_cnpj: Annotated[str | None, Query(pattern=CNPJ_PATTERN)] = None,
    supplier: Annotated[str | None, Query(pattern=SUPPLIER_PATTERN, description="CNPJ/CPF")] = None,
    date_from: Annotated[str | None, Query(pattern=ISO_DATE, description="created on or after, UTC")] = None,
    date_to: Annotated[str | None, Query(pattern=ISO_DATE, description="created on or before, UTC")] = None,
    min_value: Annotated[float | None, Query(ge=0, le=1e15, allow_inf_nan=False)] = None,
    sort: FindingSort = FindingSort.NEWEST,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    first = parse_day(date_from, "date_from") if date_from else None
    last = parse_day(date_to, "date_to") if date_to else None
    if first and last and first > last:
        raise bad_param("date_to", "before date_from")
    conditions: list[ColumnElement[bool]] = []
    if rule:
        conditions.append(FindingRow.rule.in_(sorted(set(rule))))
    if severity:
        conditions.append(FindingRow.severity.in_(sorted({s.value for s in severity})))
    if status:
        conditions.append(FindingRow.status.in_(sorted({s.value for s in status})))
    if uf:
        conditions.append(FindingRow.uf == uf.upper())
    if buyer_cnpj:
        conditions.append(FindingRow.buyer_cnpj == buyer_cnpj)
    if supplier:
        conditions.append(FindingRow.supplier_id == supplier)
    if first:
        conditions.append(FindingRow.created_at >= datetime.combine(first, time(), UTC))
    if last:
        conditions.append(FindingRow.created_at < datetime.combine(last + timedelta(days=1), time(), UTC))
    if min_value is not None:
        conditions.append(FindingRow.value >= min_value)
    # Cursors carry a digest of the filters, so one cannot be replayed against a different query.
    filters = _digest(rule, severity, status, uf, buyer_cnpj, supplier, date_from, date_to, min_value)
    if cursor:
        conditions.append(_keyset(sort, _decode_cursor(cursor, sort, filters)))
    query = select(*_LIST_COLUMNS).where(*conditions).order_by(*_ORDER[sort]).limit(limit + 1)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    items = [_item(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        tail = items[-1]
        key = (
            [tail["id"]] if sort in (FindingSort.NEWEST, FindingSort.OLDEST) else [tail["score"], tail["id"]]
        )
        next_cursor = _encode_cursor(sort, key, filters)
    if format == "csv":
        return _csv(items, next_cursor)
    return json_response({"items": items, "next_cursor": next_cursor})


FindingId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _detail(connection: Connection, finding_id: int) -> dict[str, Any]:
    row = connection.execute(
        select(*_LIST_COLUMNS, FindingRow.evidence, FindingRow.run_id).where(FindingRow.id == finding_id)
    ).first()
    if row is None:
        raise ApiError(404, f"finding {finding_id} not found", param="id", location="path")
    item = _item(row[: len(_FIELDS)])
    item["evidence"], item["run_id"] = row.evidence, row.run_id
    events = select(
        FindingEventRow.actor,
        FindingEventRow.from_status,
        FindingEventRow.to_status,
        FindingEventRow.note,
        FindingEventRow.created_at,
    ).where(FindingEventRow.finding_id == finding_id)
    item["events"] = [
        {**event._mapping, "created_at": utc(event.created_at)}
        for event in connection.execute(events.order_by(FindingEventRow.id))
    ]
    flagged = record_summaries(connection, [item["record"]])
    purchase = flagged[0]["purchase_control_number"] if flagged else None
    item["records"] = flagged + related_records(connection, item["record"], purchase)
    return item


@router.get("/findings/{id}", response_model=FindingDetail, summary="One finding with evidence and records")
def get_finding(id: FindingId, engine: EngineDep, _principal: Reader) -> Response:
    with engine.connect() as connection:
        return json_response(_detail(connection, id))


@router.patch("/findings/{id}", response_model=FindingDetail, summary="Triage a finding (audited)")
def triage_finding(id: FindingId, body: Triage, engine: EngineDep, principal: Writer) -> Response:
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
