"""`/v1/runs`: ingestion runs and periodic job runs, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, select
from starlette.responses import Response

from cidadao.api.deps import Reader, SessionDep
from cidadao.api.findings import MAX_ID
from cidadao.api.responses import json_response, utc
from cidadao.store.models import IngestionRunRow, JobRunRow

router = APIRouter(prefix="/v1", tags=["runs"])

RunStatus = Annotated[str | None, Query(pattern=r"^(running|succeeded|failed)$")]
Limit = Annotated[int, Query(ge=1, le=500)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="only runs with a smaller id (paging)")]


class IngestionRun(BaseModel):
    id: int
    source: str
    window_start: str | None
    window_end: str | None
    status: str
    fetched: int
    ingested: int
    updated: int
    unchanged: int
    quarantined: int
    findings: int
    alerts: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class JobRun(BaseModel):
    id: int
    job: str
    window_start: datetime
    status: str
    attempts: int
    detail: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None


class IngestionRunList(BaseModel):
    items: list[IngestionRun]


class JobRunList(BaseModel):
    items: list[JobRun]


def _naive(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@router.get("/runs", response_model=IngestionRunList, summary="Ingestion runs, newest first")
def list_runs(
    connection: SessionDep,
    _principal: Reader,
    source: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    status: RunStatus = None,
    limit: Limit = 50,
    before: Before = None,
) -> Response:
    conditions: list[ColumnElement[bool]] = []
    if source:
        conditions.append(IngestionRunRow.source == source)
    if status:
        conditions.append(IngestionRunRow.status == status)
    if before:
        conditions.append(IngestionRunRow.id < before)
    query = (
        select(IngestionRunRow.__table__).where(*conditions).order_by(IngestionRunRow.id.desc()).limit(limit)
    )
    items = []
    for row in connection.execute(query).mappings():
        item = dict(row)
        item["window_start"], item["window_end"] = _naive(row["window_start"]), _naive(row["window_end"])
        item["started_at"], item["finished_at"] = utc(row["started_at"]), utc(row["finished_at"])
        items.append(item)
    return json_response({"items": items})


@router.get("/runs/jobs", response_model=JobRunList, summary="Periodic job runs, newest first")
def list_job_runs(
    connection: SessionDep,
    _principal: Reader,
    job: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    status: RunStatus = None,
    limit: Limit = 50,
    before: Before = None,
) -> Response:
    conditions: list[ColumnElement[bool]] = []
    if job:
        conditions.append(JobRunRow.job == job)
    if status:
        conditions.append(JobRunRow.status == status)
    if before:
        conditions.append(JobRunRow.id < before)
    query = select(JobRunRow.__table__).where(*conditions).order_by(JobRunRow.id.desc()).limit(limit)
    items = []
    for row in connection.execute(query).mappings():
        item = dict(row)
        for name in ("window_start", "started_at", "finished_at"):
            item[name] = utc(row[name])
        items.append(item)
    return json_response({"items": items})
