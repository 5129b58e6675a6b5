"""`/v1/records/{numeroControlePNCP}`: one contratação or contrato, its raw JSON, links and findings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from pydantic import BaseModel
from sqlalchemy import (
    BindParameter,
    Connection,
    Select,
    String,
    Text,
    bindparam,
    cast,
    func,
    or_,
    select,
)
from starlette.responses import Response

from cidadao.api.deps import Reader, SessionDep
from cidadao.api.errors import ApiError
from cidadao.api.responses import json_response, money
from cidadao.domain.records import RecordKind, pncp_link
from cidadao.store.models import FindingRow, RecordRow

router = APIRouter(prefix="/v1", tags=["records"])

CONTROL_NUMBER = r"^[0-9A-Za-z./-]{1,64}$"
RECORD_VALUE = func.coalesce(RecordRow.value_global, RecordRow.value_homologated, RecordRow.value_estimated)
_SUMMARY_COLUMNS = (
    RecordRow.control_number,
    RecordRow.kind,
    RecordRow.purchase_control_number,
    RecordRow.buyer_cnpj,
    RecordRow.buyer_name,
    RecordRow.uf,
    RecordRow.municipality,
    RecordRow.year,
    RecordRow.sequence,
    RecordRow.modalidade_id,
    RecordRow.modalidade_name,
    RecordRow.amparo_name,
    RecordRow.object,
    RECORD_VALUE.label("value"),
    RecordRow.published_at,
    RecordRow.signed_at,
    RecordRow.supplier_id,
    RecordRow.supplier_name,
)


class RecordSummary(BaseModel):
    control_number: str
    kind: str
    purchase_control_number: str | None
    buyer_cnpj: str | None
    buyer_name: str | None
    uf: str | None
    municipality: str | None
    year: int | None
    sequence: int | None
    modalidade_id: int | None
    modalidade_name: str | None
    amparo_name: str | None
    object: str | None
    value: float | None
    published_at: str | None  # as published, Brasília local time without offset
    signed_at: date | None
    supplier_id: str | None
    supplier_name: str | None
    link: str | None


class RecordFinding(BaseModel):
    id: int
    rule: str
    severity: str
    score: float
    status: str
    message: str


class RecordDetail(RecordSummary):
    raw: dict[str, Any]
    warnings: list[str] | None
    related: list[RecordSummary]
    findings: list[RecordFinding]


SUMMARY_FIELDS = tuple(column.key for column in _SUMMARY_COLUMNS)


def summary(row: Any) -> dict[str, Any]:
    return summary_of(dict(row._mapping))


def summary_of(item: dict[str, Any]) -> dict[str, Any]:
    """A record summary from its columns by name (a Core row's mapping or a driver tuple zipped)."""
    item["value"] = money(item["value"])
    published: datetime | None = item["published_at"]
    item["published_at"] = published.isoformat() if published else None
    cnpj, year, sequence = item["buyer_cnpj"], item["year"], item["sequence"]
    kind = item["kind"]
    item["link"] = (
        pncp_link(RecordKind(kind), cnpj, year, sequence)
        if cnpj and year and sequence and kind in RecordKind._value2member_map_
        else None
    )
    return item


_RECORD: BindParameter[str] = bindparam("record", type_=String())


def _around(record: Any) -> Select[*tuple[Any, ...]]:
    """Summaries of the record `record` (a control number expression) first, then those related to it."""
    purchase = (
        select(RecordRow.purchase_control_number).where(RecordRow.control_number == record).scalar_subquery()
    )
    return (
        select(*_SUMMARY_COLUMNS)
        .where(
            or_(
                RecordRow.control_number == record,
                RecordRow.purchase_control_number == record,
                RecordRow.control_number == purchase,
                RecordRow.purchase_control_number == purchase,
            )
        )
        .order_by((RecordRow.control_number == record).desc(), RecordRow.id)
        .limit(51)
    )


AROUND = _around(_RECORD)
# The same for the record a finding flags, by finding id: sent with the finding's own query in one round trip.
AROUND_FINDING = _around(select(FindingRow.record).where(FindingRow.id == bindparam("id")).scalar_subquery())


def records_around(connection: Connection, control_number: str) -> list[dict[str, Any]]:
    """The record (first, when stored) and the records related to it."""
    return [summary(row) for row in connection.execute(AROUND, {"record": control_number})]


@router.get("/records/{control_number:path}", response_model=RecordDetail, summary="One PNCP record")
def get_record(
    control_number: Annotated[
        str, Path(pattern=CONTROL_NUMBER, description="numeroControlePNCP, e.g. 00394460000141-1-000123/2024")
    ],
    connection: SessionDep,
    _principal: Reader,
) -> Response:
    row = connection.execute(
        # The stored JSON text goes out as is: a PNCP record may hold numbers beyond 64 bits, which the
        # parsed value could not be written back from.
        select(*_SUMMARY_COLUMNS, cast(RecordRow.raw, Text).label("raw"), RecordRow.warnings).where(
            RecordRow.control_number == control_number
        )
    ).first()
    if row is None:
        raise ApiError(404, f"record {control_number} not found", param="control_number", location="path")
    item = summary(row)
    item["raw"] = orjson.Fragment(item["raw"])
    item["related"] = records_around(connection, control_number)[1:]
    findings = select(
        FindingRow.id,
        FindingRow.rule,
        FindingRow.severity,
        FindingRow.score,
        FindingRow.status,
        FindingRow.message,
    ).where(FindingRow.record == control_number)
    item["findings"] = [dict(f._mapping) for f in connection.execute(findings.order_by(FindingRow.id))]
    return json_response(item)
