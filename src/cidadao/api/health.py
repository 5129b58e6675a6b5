"""Probes. `/health` and `/health/live` do no I/O (a slow dependency must never restart the API);
`/health/ready` checks every dependency with a short timeout and answers 503 naming the failing checks.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from starlette.responses import Response

from cidadao.api.responses import json_response, utc
from cidadao.config import Settings
from cidadao.monitor.jobs import JOBS
from cidadao.store.db import ensure_migrated
from cidadao.store.models import AlertOutboxRow, HeartbeatRow, IngestionRunRow, JobRunRow

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0
MONITOR_JOB = JOBS["monitor_contratacoes"].name
STALE_AFTER_INTERVALS = 3  # a run or heartbeat older than this many intervals means something stopped


class Check(BaseModel):
    status: Literal["ok", "fail", "unknown"]
    detail: str
    data: dict[str, Any] | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


class Liveness(BaseModel):
    status: Literal["ok"]


CheckResult = tuple[str, str, dict[str, Any] | None]


def _age(when: datetime | None, now: datetime) -> float | None:
    moment = utc(when)
    return None if moment is None else round((now - moment).total_seconds(), 1)


def check_database(engine: Engine, _settings: Settings) -> CheckResult:
    ensure_migrated(engine)
    return "ok", "reachable and migrated", None


def check_broker(_engine: Engine, settings: Settings) -> CheckResult:
    if not settings.redis_url:
        return "ok", "embedded broker (no REDIS_URL)", None
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok", "redis answers ping", None


def check_monitor(engine: Engine, settings: Settings) -> CheckResult:
    with engine.connect() as c:
        ingestion = c.execute(
            select(func.max(IngestionRunRow.finished_at)).where(IngestionRunRow.status == "succeeded")
        ).scalar_one_or_none()
        job = c.execute(
            select(func.max(JobRunRow.finished_at)).where(
                JobRunRow.status == "succeeded", JobRunRow.job == MONITOR_JOB
            )
        ).scalar_one_or_none()
    now = datetime.now(UTC)
    ages = [age for age in (_age(ingestion, now), _age(job, now)) if age is not None]
    limit = STALE_AFTER_INTERVALS * settings.monitor_interval_seconds
    if not ages:
        return "fail", "no successful monitor run yet", {"max_age_seconds": limit}
    age = min(ages)
    status = "ok" if age <= limit else "fail"
    return (
        status,
        f"last successful monitor run {age:.0f}s ago",
        {"age_seconds": age, "max_age_seconds": limit},
    )


def check_heartbeats(engine: Engine, settings: Settings) -> CheckResult:
    with engine.connect() as c:
        beats = c.execute(select(HeartbeatRow.component, HeartbeatRow.seen_at)).all()
    now = datetime.now(UTC)
    limit = STALE_AFTER_INTERVALS * settings.heartbeat_interval_seconds
    ages = {component: _age(seen, now) for component, seen in beats}
    beat_age = ages.get("beat")
    worker_ages = [age for name, age in ages.items() if name.startswith("worker@") and age is not None]
    problems = []
    if beat_age is None or beat_age > limit:
        problems.append("beat silent" if beat_age is None else f"beat last seen {beat_age:.0f}s ago")
    if not worker_ages or min(worker_ages) > limit:
        problems.append("no worker seen recently")
    data = {"ages_seconds": ages, "max_age_seconds": limit}
    return ("fail", "; ".join(problems), data) if problems else ("ok", "beat and workers alive", data)


def check_dead_letters(engine: Engine, _settings: Settings) -> CheckResult:
    with engine.connect() as c:
        dead = c.execute(select(func.count()).where(AlertOutboxRow.status == "dead")).scalar_one()
    if dead:
        return "fail", f"{dead} alerts dead-lettered (see `cidadao alerts`)", {"dead": dead}
    return "ok", "no dead-lettered alerts", {"dead": 0}


def check_channels(_engine: Engine, settings: Settings) -> CheckResult:
    try:
        configured = importlib.import_module("cidadao.alerts.channels").configured_channels
    except (ImportError, AttributeError):
        return "unknown", "alert channels module not available", None
    channels: dict[str, int] = configured(settings)
    if not sum(channels.values()):
        return "fail", "no alert channel configured", {"channels": channels}
    return "ok", f"{sum(channels.values())} alert channels configured", {"channels": channels}


CHECKS: dict[str, Callable[[Engine, Settings], CheckResult]] = {
    "database": check_database,
    "broker": check_broker,
    "monitor": check_monitor,
    "heartbeats": check_heartbeats,
    "dead_letters": check_dead_letters,
    "alert_channels": check_channels,
}


async def _run(check: Callable[[Engine, Settings], CheckResult], engine: Engine, settings: Settings) -> Check:
    try:
        status, detail, data = await asyncio.wait_for(
            asyncio.to_thread(check, engine, settings), CHECK_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return Check(status="fail", detail=f"no answer within {CHECK_TIMEOUT_SECONDS:g}s")
    except Exception as error:
        return Check(status="fail", detail=f"{type(error).__name__}: {error}"[:500])
    return Check(status=status, detail=detail, data=data)


_LIVE = b'{"status":"ok"}'


@router.get("/health", response_model=Liveness, summary="Instant probe, no I/O")
async def health() -> Response:
    return Response(_LIVE, media_type="application/json")


@router.get("/health/live", response_model=Liveness, summary="Liveness, no I/O")
async def live() -> Response:
    return Response(_LIVE, media_type="application/json")


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness: every dependency checked, 503 when one fails",
    responses={503: {"model": Readiness, "description": "at least one check failed"}},
)
async def ready(request: Request) -> Response:
    engine, settings = request.app.state.engine, request.app.state.settings
    results = await asyncio.gather(*(_run(check, engine, settings) for check in CHECKS.values()))
    checks = dict(zip(CHECKS, results, strict=True))
    failing = any(check.status == "fail" for check in checks.values())
    body = {
        "status": "not_ready" if failing else "ready",
        "checks": {name: check.model_dump() for name, check in checks.items()},
    }
    return json_response(body, status=503 if failing else 200)
