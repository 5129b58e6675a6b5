"""Daily summary of the findings created in one period, through the outbox (idempotent per window)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, literal, select
from sqlalchemy.orm import Session

from cidadao.alerts.channels import build_channels
from cidadao.alerts.outbox import insert_rows, outbox_row
from cidadao.alerts.payload import envelope, finding_view, severity_rank, utc
from cidadao.config import Settings
from cidadao.domain.records import Severity
from cidadao.logs import get_logger
from cidadao.store.db import transaction
from cidadao.store.models import FindingRow, RecordRow

log = get_logger(__name__)
TOP = 10
_SQLITE_TIME = "%Y-%m-%d %H:%M:%f"


def _created_in(session: Session, start: datetime, end: datetime) -> ColumnElement[bool]:
    """created_at in [start, end). SQLite keeps text with or without fractions ('…:00' sorts before
    '…:00.000000'), so compare normalised strings there; PostgreSQL compares timestamptz values."""
    if session.get_bind().dialect.name == "sqlite":
        column = func.strftime(_SQLITE_TIME, FindingRow.created_at)
        low = func.strftime(_SQLITE_TIME, literal(start.strftime("%Y-%m-%d %H:%M:%S.%f")))
        high = func.strftime(_SQLITE_TIME, literal(end.strftime("%Y-%m-%d %H:%M:%S.%f")))
        return (column >= low) & (column < high)
    return (FindingRow.created_at >= start) & (FindingRow.created_at < end)


def summarise(views: list[dict[str, Any]], start: datetime, end: datetime, hours: int) -> dict[str, Any]:
    severities = Counter(str(v["severity"]) for v in views)
    rules = Counter(str(v["rule"]) for v in views)
    ufs = Counter(str(v["uf"] or "sem UF") for v in views)
    ranked = sorted(views, key=lambda v: (-float(v["score"]), -severity_rank(v["severity"]), v["id"]))
    present = [s.value for s in sorted(Severity, key=lambda s: -s.rank) if severities[s.value]]
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "hours": hours},
        "total": len(views),
        "max_severity": present[0] if present else None,
        "by_severity": {name: severities[name] for name in present},
        "by_rule": dict(sorted(rules.items(), key=lambda item: (-item[1], item[0]))),
        "by_uf": dict(sorted(ufs.items(), key=lambda item: (-item[1], item[0]))),
        "top": ranked[:TOP],
    }


def send_critical_anomalies_summary(
    engine: Engine, settings: Settings, period_hours: int = 24, now: datetime | None = None
) -> dict[str, Any]:
    """Summarise the findings created in [now - period_hours, now) and queue it for every channel.

    `now` defaults to the start of the current UTC hour, so two schedulers firing within the hour build the
    same window, and the per-window key makes the second a no-op. Returns the summary plus `enqueued`.
    """
    end = utc(now) if now is not None else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=period_hours)
    with transaction(engine) as session:
        result = session.execute(
            select(FindingRow, RecordRow)
            .outerjoin(RecordRow, RecordRow.control_number == FindingRow.record)
            .where(_created_in(session, start, end))
        )
        summary = summarise([finding_view(f, r) for f, r in result], start, end, period_hours)
        enqueued = 0
        if summary["total"] or settings.digest_send_empty:
            payload = envelope("digest.daily", summary)
            window = f"digest-{start:%Y%m%dT%H%M%SZ}-{period_hours}h"
            rows = [
                outbox_row(f"{window}-{channel.slug}", channel.slug, "digest", payload, datetime.now(UTC))
                for channel in build_channels(settings)
            ]
            enqueued = insert_rows(session, rows) if rows else 0
    log.info(
        "digest built",
        start=start.isoformat(),
        end=end.isoformat(),
        total=summary["total"],
        enqueued=enqueued,
    )
    return {**summary, "enqueued": enqueued}
