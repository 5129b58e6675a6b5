"""Transactional outbox: alert rows written in the transaction that inserted their findings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cidadao.alerts.channels import Channel, build_channels
from cidadao.alerts.payload import finding_payload, finding_view, group_payload, max_severity, severity_rank
from cidadao.alerts.policy import held_until, plan
from cidadao.config import Settings
from cidadao.logs import get_logger
from cidadao.store.models import AlertOutboxRow, FindingRow, RecordRow

log = get_logger(__name__)
_INSERT_CHUNK = 500


def finding_key(finding_id: int, channel: str) -> str:
    return f"finding-{finding_id}-{channel}"


def group_key(finding_ids: Iterable[int]) -> str:
    """Deterministic: the same findings grouped again give the same key (the channel slug is appended)."""
    digest = hashlib.sha256(",".join(str(i) for i in sorted(finding_ids)).encode()).hexdigest()[:20]
    return f"group-{digest}"


def outbox_row(
    key: str, channel: str, kind: str, payload: dict[str, Any], now: datetime, release: datetime | None = None
) -> dict[str, Any]:
    """A row due `now`, or held (quiet hours) until `release`."""
    return {
        "idempotency_key": key,
        "finding_id": payload["data"]["finding"]["id"] if kind == "finding" else None,
        "channel": channel,
        "kind": kind,
        "payload": payload,
        "status": "held" if release else "pending",
        "attempts": 0,
        "next_attempt_at": release or now,
    }


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert, skipping any row whose key or (finding, channel) exists: returns how many were new."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # One cached statement, batched by SQLAlchemy's insertmanyvalues; RETURNING yields only new rows.
    statement = insert(AlertOutboxRow).on_conflict_do_nothing().returning(AlertOutboxRow.id)
    return sum(
        len(session.scalars(statement, list(rows[start : start + _INSERT_CHUNK])).all())
        for start in range(0, len(rows), _INSERT_CHUNK)
    )


def rows_for(
    views: list[dict[str, Any]], channels: Sequence[Channel], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for channel in channels:
        eligible = [v for v in views if severity_rank(v["severity"]) >= channel.min_rank]
        for alert in plan(eligible, settings.alert_group_threshold):
            if len(alert) == 1:
                key, kind, payload = (
                    finding_key(alert[0]["id"], channel.slug),
                    "finding",
                    finding_payload(alert[0]),
                )
            else:
                key, kind, payload = group_key(v["id"] for v in alert), "group", group_payload(alert)
                key = f"{key}-{channel.slug}"
            release = held_until(settings, now, max_severity(payload))
            rows.append(outbox_row(key, channel.slug, kind, payload, now, release))
    return rows


def enqueue_alerts(
    session: Session, finding_ids: Sequence[int], settings: Settings, now: datetime | None = None
) -> int:
    """Queue the alerts for newly inserted findings, in the caller's transaction. Returns rows added.

    Findings below a channel's minimum severity get no row (they appear in the digest). More than
    ALERT_GROUP_THRESHOLD findings of one buyer in this call become one grouped alert per channel.
    """
    if not finding_ids:
        return 0
    channels = build_channels(settings)
    if not channels:
        return 0
    session.flush()
    result = session.execute(
        select(FindingRow, RecordRow)
        .outerjoin(RecordRow, RecordRow.control_number == FindingRow.record)
        .where(FindingRow.id.in_(list(finding_ids)))
    )
    views = [finding_view(finding, record) for finding, record in result]
    rows = rows_for(views, channels, settings, now or datetime.now(UTC))
    added = insert_rows(session, rows) if rows else 0
    log.info("alerts enqueued", findings=len(views), rows=added, channels=len(channels))
    return added


def outbox_counts(engine: Engine) -> dict[str, int]:
    """Rows per status (pending, held, delivered, dead): for metrics and readiness."""
    with engine.connect() as connection:
        result = connection.execute(
            select(AlertOutboxRow.status, func.count()).group_by(AlertOutboxRow.status)
        )
        counts = {str(status): int(count) for status, count in result}
    return {status: counts.get(status, 0) for status in ("pending", "held", "delivered", "dead")}
