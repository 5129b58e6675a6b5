"""Claims due outbox rows, delivers each outside any transaction and records the outcome."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Engine, or_, select, text, update

from cidadao.alerts.channels import Channel, Delivery, DeliveryError, build_channels
from cidadao.alerts.payload import utc
from cidadao.config import Settings
from cidadao.logs import get_logger
from cidadao.store.db import transaction
from cidadao.store.models import AlertOutboxRow

log = get_logger(__name__)
T = AlertOutboxRow

CLAIM_CHUNK = 10  # rows claimed per round trip; bounds how long a lease must last
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 6 * 3600.0

ALERTS_DELIVERED = Counter("cidadao_alerts_delivered_total", "Alerts delivered", ["channel_kind"])
ALERTS_FAILED = Counter("cidadao_alerts_failed_attempts_total", "Failed delivery attempts", ["channel_kind"])
ALERTS_DEAD = Counter("cidadao_alerts_dead_lettered_total", "Alerts dead-lettered", ["channel_kind"])


@dataclass(slots=True)
class DispatchStats:
    claimed: int = 0
    delivered: int = 0
    retried: int = 0  # failed, scheduled again
    dead: int = 0  # failed for the last time (or permanently)
    deferred: int = 0  # not attempted: the channel asked us to slow down earlier in this batch

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    key: str
    channel: str
    payload: dict[str, Any]
    attempts: int


def backoff(attempt: int) -> float:
    """Exponential with jitter in [d/2, d): spreads retries of many rows that failed together."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def claim(engine: Engine, limit: int, now: datetime, lease_until: datetime) -> list[Claimed]:
    """Atomically take due rows. PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent dispatchers never
    share a row; SQLite: the UPDATE runs under BEGIN IMMEDIATE, which serialises writers."""
    due = (
        select(T.id)
        .where(
            T.status.in_(("pending", "held")),
            T.next_attempt_at <= now,
            or_(T.claimed_until.is_(None), T.claimed_until < now),
        )
        .order_by(T.next_attempt_at, T.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(T)
        .where(T.id.in_(due.scalar_subquery()))
        .values(status="pending", claimed_until=lease_until)
        .returning(T.id, T.idempotency_key, T.channel, T.payload, T.attempts)
    )
    with transaction(engine) as session:
        rows = session.execute(statement).all()
    return sorted((Claimed(*row) for row in rows), key=lambda row: row.id)


def _record(engine: Engine, row: Claimed, lease_until: datetime, **values: Any) -> None:
    # Only if our lease still holds: a row re-claimed by another dispatcher is theirs to record.
    with transaction(engine) as session:
        if engine.dialect.name == "postgresql":
            # No wait for the WAL flush: losing this mark in a database crash only means one redelivery
            # with the same webhook-id, which receivers drop; waiting would cost a disk flush per alert.
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        session.execute(
            update(T)
            .where(T.id == row.id, T.claimed_until == lease_until)
            .values(claimed_until=None, **values)
        )


def dispatch_due(
    engine: Engine, settings: Settings, limit: int = 100, now: datetime | None = None
) -> DispatchStats:
    """Deliver up to `limit` due alerts. `now` pins the clock (tests); by default the real time."""
    channels = {channel.slug: channel for channel in build_channels(settings)}
    stats = DispatchStats()
    paused: dict[str, datetime] = {}  # channel -> when it may be tried again (429 earlier in this batch)
    try:
        while stats.claimed < limit:
            moment = utc(now) if now is not None else datetime.now(UTC)
            chunk = min(CLAIM_CHUNK, limit - stats.claimed)
            # Long enough for every row of the chunk to time out once, with margin.
            lease_until = moment + timedelta(seconds=chunk * settings.alert_timeout_seconds * 2 + 60)
            rows = claim(engine, chunk, moment, lease_until)
            if not rows:
                break
            stats.claimed += len(rows)
            for row in rows:
                _deliver(engine, settings, channels, row, lease_until, paused, stats, now)
    finally:
        for channel in channels.values():
            channel.close()
    if stats.claimed:
        log.info("alerts dispatched", **stats.as_dict())
    return stats


def _deliver(
    engine: Engine,
    settings: Settings,
    channels: dict[str, Channel],
    row: Claimed,
    lease_until: datetime,
    paused: dict[str, datetime],
    stats: DispatchStats,
    now: datetime | None,
) -> None:
    if row.channel in paused:
        _record(engine, row, lease_until, next_attempt_at=paused[row.channel])
        stats.deferred += 1
        return
    channel = channels.get(row.channel)
    attempt = row.attempts + 1
    kind = row.channel.split(":", 1)[0]
    error: DeliveryError | None = None
    try:
        if channel is None:
            raise DeliveryError("channel no longer configured", permanent=True)
        channel.send(Delivery(key=row.key, payload=row.payload))
    except DeliveryError as failure:
        error = failure
    except Exception as failure:  # a bug in one channel must not leave the row claimed or stop the batch
        log.error("alert channel crashed", alert=row.key, channel=row.channel, error=type(failure).__name__)
        error = DeliveryError(f"internal error: {type(failure).__name__}")
    if error is not None:
        finished = utc(now) if now is not None else datetime.now(UTC)
        ALERTS_FAILED.labels(kind).inc()
        if error.permanent or attempt >= settings.alert_max_attempts:
            _record(engine, row, lease_until, status="dead", attempts=attempt, last_error=error.reason)
            ALERTS_DEAD.labels(kind).inc()
            stats.dead += 1
            log.warning("alert dead-lettered", alert=row.key, channel=row.channel, reason=error.reason)
            return
        if error.retry_after is not None:
            delay = error.retry_after + random.uniform(0, min(5.0, error.retry_after * 0.1))
            paused[row.channel] = finished + timedelta(seconds=delay)
        else:
            delay = backoff(attempt)
        retry_at = finished + timedelta(seconds=delay)
        _record(engine, row, lease_until, attempts=attempt, last_error=error.reason, next_attempt_at=retry_at)
        stats.retried += 1
        log.info("alert retry scheduled", alert=row.key, channel=row.channel, attempt=attempt, delay=delay)
        return
    delivered = utc(now) if now is not None else datetime.now(UTC)
    _record(
        engine,
        row,
        lease_until,
        status="delivered",
        attempts=attempt,
        last_error=None,
        delivered_at=delivered,
    )
    ALERTS_DELIVERED.labels(kind).inc()
    stats.delivered += 1
