"""Buyer and supplier profiles: what they contracted, what was flagged, and a risk summary."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel
from sqlalchemy import Connection, distinct, func, select
from sqlalchemy.orm import InstrumentedAttribute
from starlette.responses import Response

from cidadao.api.deps import Reader, SessionDep
from cidadao.api.errors import ApiError
from cidadao.api.findings import CNPJ_PATTERN, SUPPLIER_PATTERN
from cidadao.api.records import RECORD_VALUE
from cidadao.api.responses import json_response, money
from cidadao.domain.records import FindingStatus, Severity
from cidadao.store.models import BuyerRow, FindingRow, RecordRow, SupplierRow

router = APIRouter(prefix="/v1", tags=["entities"])

_OPEN = (FindingStatus.NEW.value, FindingStatus.CONFIRMED.value)
_RANK = {severity.value: severity.rank for severity in Severity}


class RecordTotals(BaseModel):
    count: int
    value: float | None
    by_kind: dict[str, int]
    by_modalidade: dict[str, int]
    first_published: date | None
    last_published: date | None


class FindingTotals(BaseModel):
    count: int
    by_severity: dict[str, int]
    by_status: dict[str, int]
    by_rule: dict[str, int]


class RiskSummary(BaseModel):
    level: Severity | None  # highest severity among open findings
    open_findings: int
    flagged_records: int
    flagged_share: float  # flagged records / records
    score: float  # sum of open findings' scores


class Profile(BaseModel):
    id: str
    name: str | None
    details: dict[str, Any]
    records: RecordTotals
    findings: FindingTotals
    risk: RiskSummary


def _profile(
    connection: Connection,
    record_column: InstrumentedAttribute[Any],
    finding_column: InstrumentedAttribute[Any],
    entity_id: str,
    details: dict[str, Any],
    name: str | None,
) -> dict[str, Any] | None:
    totals = connection.execute(
        select(
            func.count(),
            func.sum(RECORD_VALUE),
            func.min(RecordRow.published_at),
            func.max(RecordRow.published_at),
        ).where(record_column == entity_id)
    ).one()
    by_kind = connection.execute(
        select(RecordRow.kind, func.count()).where(record_column == entity_id).group_by(RecordRow.kind)
    ).all()
    by_modalidade = connection.execute(
        select(RecordRow.modalidade_id, func.count())
        .where(record_column == entity_id, RecordRow.modalidade_id.is_not(None))
        .group_by(RecordRow.modalidade_id)
    ).all()
    findings = connection.execute(
        select(
            FindingRow.rule, FindingRow.severity, FindingRow.status, func.count(), func.sum(FindingRow.score)
        )
        .where(finding_column == entity_id)
        .group_by(FindingRow.rule, FindingRow.severity, FindingRow.status)
    ).all()
    if not totals[0] and not findings and not details and name is None:
        return None
    flagged = connection.execute(
        select(func.count(distinct(FindingRow.record))).where(
            finding_column == entity_id, FindingRow.status.in_(_OPEN)
        )
    ).scalar_one()
    by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    by_rule: dict[str, int] = {}
    open_count, score, level = 0, 0.0, None
    for rule, severity, status, count, score_sum in findings:
        by_severity[severity] = by_severity.get(severity, 0) + count
        by_status[status] = by_status.get(status, 0) + count
        by_rule[rule] = by_rule.get(rule, 0) + count
        if status in _OPEN:
            open_count += count
            score += float(score_sum or 0)
            if level is None or _RANK.get(severity, 0) > _RANK.get(level, 0):
                level = severity
    records = int(totals[0] or 0)
    first, last = totals[2], totals[3]
    return {
        "id": entity_id,
        "name": name,
        "details": details,
        "records": {
            "count": records,
            "value": money(totals[1]),
            "by_kind": dict(by_kind),
            "by_modalidade": {str(modalidade): count for modalidade, count in by_modalidade},
            "first_published": first.date() if first else None,
            "last_published": last.date() if last else None,
        },
        "findings": {
            "count": sum(by_severity.values()),
            "by_severity": by_severity,
            "by_status": by_status,
            "by_rule": by_rule,
        },
        "risk": {
            "level": level if level in _RANK else None,
            "open_findings": open_count,
            "flagged_records": flagged,
            "flagged_share": round(flagged / records, 4) if records else 0.0,
            "score": round(score, 4),
        },
    }


def _latest_name(connection: Connection, name_column: Any, id_column: Any, entity_id: str) -> str | None:
    query = select(name_column).where(id_column == entity_id, name_column.is_not(None))
    name: str | None = connection.execute(query.order_by(RecordRow.id.desc()).limit(1)).scalar_one_or_none()
    return name


@router.get("/buyers/{cnpj}", response_model=Profile, summary="Profile of a buying body (órgão)")
def get_buyer(
    cnpj: Annotated[str, Path(pattern=CNPJ_PATTERN)], connection: SessionDep, _principal: Reader
) -> Response:
    row = connection.execute(select(BuyerRow).where(BuyerRow.cnpj == cnpj)).scalar_one_or_none()
    details = {"sphere": row.sphere, "power": row.power, "uf": row.uf} if row else {}
    name = (
        row.name
        if row and row.name
        else _latest_name(connection, RecordRow.buyer_name, RecordRow.buyer_cnpj, cnpj)
    )
    profile = _profile(connection, RecordRow.buyer_cnpj, FindingRow.buyer_cnpj, cnpj, details, name)
    if profile is None:
        raise ApiError(404, f"buyer {cnpj} not found", param="cnpj", location="path")
    return json_response(profile)


@router.get("/suppliers/{supplier_id}", response_model=Profile, summary="Profile of a supplier (CNPJ/CPF)")
def get_supplier(
    supplier_id: Annotated[str, Path(pattern=SUPPLIER_PATTERN)], connection: SessionDep, _principal: Reader
) -> Response:
    row = connection.execute(
        select(SupplierRow).where(SupplierRow.supplier_id == supplier_id)
    ).scalar_one_or_none()
    details = {"supplier_type": row.supplier_type, "id_valid": row.id_valid} if row else {}
    name = (
        row.name
        if row and row.name
        else _latest_name(connection, RecordRow.supplier_name, RecordRow.supplier_id, supplier_id)
    )
    profile = _profile(connection, RecordRow.supplier_id, FindingRow.supplier_id, supplier_id, details, name)
    if profile is None:
        raise ApiError(404, f"supplier {supplier_id} not found", param="supplier_id", location="path")
    return json_response(profile)
