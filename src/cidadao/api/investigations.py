"""`POST /v1/investigations`: analyse a buyer, supplier or time window now, on the worker's critical queue."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from starlette.responses import Response

from cidadao.api.deps import EngineDep, ReadEngineDep, Reader, Writer
from cidadao.api.errors import ApiError, parse_day
from cidadao.api.findings import CNPJ_PATTERN, ISO_DATE, MAX_ID, SUPPLIER_PATTERN
from cidadao.api.responses import json_response, utc
from cidadao.logs import get_logger
from cidadao.monitor.jobs import INVESTIGATE_TASK, Queue
from cidadao.store.models import InvestigationRow

router = APIRouter(prefix="/v1", tags=["investigations"])
log = get_logger(__name__)

MAX_WINDOW_DAYS = 366


class InvestigationRequest(BaseModel):
    kind: Literal["buyer", "supplier", "window"]
    cnpj: str | None = Field(default=None, pattern=CNPJ_PATTERN, description="buyer CNPJ (kind=buyer)")
    supplier_id: str | None = Field(default=None, pattern=SUPPLIER_PATTERN, description="kind=supplier")
    # Strings, parsed by parse_day (see there why).
    start: str | None = Field(
        default=None, pattern=ISO_DATE, description="first day, YYYY-MM-DD (kind=window)"
    )
    end: str | None = Field(default=None, pattern=ISO_DATE, description="last day, YYYY-MM-DD (kind=window)")


class Investigation(BaseModel):
    id: int
    kind: str
    target: dict[str, Any]
    status: str
    requested_by: str
    enqueued: bool | None = Field(description="whether the task reached the queue (only on creation)")
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    poll: str


def _target(body: InvestigationRequest) -> dict[str, Any]:
    def missing(param: str) -> ApiError:
        return ApiError(422, f"{param} is required when kind={body.kind}", param=param, location="body")

    if body.kind == "buyer":
        if not body.cnpj:
            raise missing("cnpj")
        return {"cnpj": body.cnpj}
    if body.kind == "supplier":
        if not body.supplier_id:
            raise missing("supplier_id")
        return {"supplier_id": body.supplier_id}
    if body.start is None:
        raise missing("start")
    if body.end is None:
        raise missing("end")
    start, end = parse_day(body.start, "start", "body"), parse_day(body.end, "end", "body")
    if end < start or end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise ApiError(
            422, f"end must be within {MAX_WINDOW_DAYS} days after start", param="end", location="body"
        )
    return {"start": start.isoformat(), "end": end.isoformat()}


def enqueue(investigation_id: int) -> bool:
    """Send the task by name; without a worker package or broker the row stays queued (and we say so)."""
    try:
        celery_app = importlib.import_module("cidadao.worker.app").celery_app
    except (ImportError, AttributeError) as error:
        log.warning("investigation_not_enqueued", id=investigation_id, error=str(error))
        return False
    try:
        celery_app.send_task(
            INVESTIGATE_TASK, args=[investigation_id], queue=Queue.CRITICAL.value, retry=False
        )
    except Exception as error:
        log.warning("investigation_not_enqueued", id=investigation_id, error=str(error))
        return False
    return True


def _out(row: Any, enqueued: bool | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.target_kind,
        "target": row.target,
        "status": row.status,
        "requested_by": row.requested_by,
        "enqueued": enqueued,
        "result": row.result,
        "error": row.error,
        "created_at": utc(row.created_at),
        "finished_at": utc(row.finished_at),
        "poll": f"/v1/investigations/{row.id}",
    }


_COLUMNS = tuple(InvestigationRow.__table__.c)


@router.post(
    "/investigations", response_model=Investigation, status_code=202, summary="Investigate now (queued)"
)
def create_investigation(body: InvestigationRequest, engine: EngineDep, principal: Writer) -> Response:
    target = _target(body)
    with engine.begin() as connection:
        row = connection.execute(
            insert(InvestigationRow)
            .values(target_kind=body.kind, target=target, status="queued", requested_by=principal.name[:128])
            .returning(*_COLUMNS)
        ).one()
    # After commit: the worker must find the row when the task arrives.
    return json_response(_out(row, enqueue(row.id)), status=202)


@router.get("/investigations/{id}", response_model=Investigation, summary="Poll an investigation")
def get_investigation(
    id: Annotated[int, Path(ge=1, le=MAX_ID)], engine: ReadEngineDep, _principal: Reader
) -> Response:
    with engine.connect() as connection:
        row = connection.execute(select(*_COLUMNS).where(InvestigationRow.id == id)).first()
    if row is None:
        raise ApiError(404, f"investigation {id} not found", param="id", location="path")
    return json_response(_out(row, None))
