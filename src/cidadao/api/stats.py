"""`/v1/stats`: finding counts by rule, severity, status, UF and month, cached briefly (full scans)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Connection, func, select
from starlette.responses import Response

from cidadao.api.deps import Reader, SessionDep
from cidadao.api.responses import json_response
from cidadao.store.models import FindingRow

router = APIRouter(prefix="/v1", tags=["stats"])
STATS_MAX_AGE_SECONDS = 60.0
_lock = threading.Lock()


class Stats(BaseModel):
    total: int
    by_rule: dict[str, int]
    by_severity: dict[str, int]
    by_status: dict[str, int]
    by_uf: dict[str, int]
    by_month: dict[str, int]
    generated_at: datetime


def _month(connection: Connection) -> Any:
    if connection.dialect.name == "sqlite":
        return func.strftime("%Y-%m", FindingRow.created_at)
    return func.to_char(FindingRow.created_at, "YYYY-MM")


def compute_stats(connection: Connection) -> dict[str, Any]:
    groups = {
        "by_rule": FindingRow.rule,
        "by_severity": FindingRow.severity,
        "by_status": FindingRow.status,
        "by_uf": func.coalesce(FindingRow.uf, "??"),
        "by_month": _month(connection),
    }
    out: dict[str, Any] = {}
    for name, column in groups.items():
        rows = connection.execute(select(column, func.count()).group_by(column).order_by(column)).all()
        out[name] = {str(key): count for key, count in rows}
    out["total"] = sum(out["by_severity"].values())
    out["generated_at"] = datetime.now(UTC)
    return out


@router.get("/stats", response_model=Stats, summary="Finding counts by rule, severity, status, UF and month")
def get_stats(request: Request, connection: SessionDep, _principal: Reader) -> Response:
    state = request.app.state
    with _lock:
        cached: tuple[float, dict[str, Any]] | None = getattr(state, "stats_cache", None)
        if cached is None or time.monotonic() - cached[0] > STATS_MAX_AGE_SECONDS:
            cached = (time.monotonic(), compute_stats(connection))
            state.stats_cache = cached
    return json_response(cached[1])
