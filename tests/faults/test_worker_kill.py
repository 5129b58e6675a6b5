"""Fault 1: kill -9 the worker at random points of monitor runs, 10 times; everything exists exactly once."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, or_, select
from tests.faults.harness import (
    RedisServer,
    Stack,
    engine_of,
    settings_for,
    stack_env,
    today_dispensas,
    wait_for,
)

from cidadao.alerts.dispatcher import dispatch_due
from cidadao.config import load_settings
from cidadao.monitor.pipeline import run_pass
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import engine_for, upgrade
from cidadao.store.models import AlertOutboxRow, FindingRow, JobRunRow, RecordRow
from cidadao.worker.app import create_celery

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

RECORDS = 2000
KILLS = 10


def finding_keys(url: str) -> set[tuple[str, str, str]]:
    with engine_for(url).connect() as connection:
        rows = connection.execute(select(FindingRow.record, FindingRow.rule, FindingRow.rule_version)).all()
    return {tuple(row) for row in rows}


def test_kill_9_the_worker_ten_times_then_every_record_finding_and_alert_exists_once(
    pg_url: str,
    redis_server: RedisServer,
    replay: ReplayServer,
    stack: Callable[[dict[str, str]], Stack],
    tmp_path: Path,
) -> None:
    records = today_dispensas(RECORDS)
    replay.publish(records)
    env = stack_env(pg_url, redis_server.url, replay, tmp_path)
    services = stack(env)
    app = create_celery(load_settings(redis_url=redis_server.url))
    rng = random.Random(20261126)
    engine = engine_of(env)

    def started(window: datetime) -> bool:
        with engine.connect() as connection:
            return (
                connection.scalar(
                    select(JobRunRow.id).where(
                        JobRunRow.job == "monitor_contratacoes", JobRunRow.window_start == window
                    )
                )
                is not None
            )

    for attempt in range(KILLS):
        services.worker()
        # Each send is a distinct window, as successive beat ticks would be.
        window = datetime(2026, 1, 1, 0, attempt, tzinfo=UTC)
        app.send_task("cidadao.monitor_contratacoes", kwargs={"window": window.isoformat()})
        wait_for(lambda window=window: started(window), 60, "the pass to start")
        time.sleep(rng.uniform(0.0, 2.5))  # a random point of the pass: fetch, upsert, analysis, delivery
        services.kill("worker")

    services.worker()
    app.send_task("cidadao.monitor_contratacoes", kwargs={"window": "2026-01-01T01:00:00+00:00"})

    def final_run_done() -> bool:
        with engine.connect() as connection:
            status = connection.scalar(
                select(JobRunRow.status).where(
                    JobRunRow.job == "monitor_contratacoes",
                    JobRunRow.window_start == datetime(2026, 1, 1, 1, tzinfo=UTC),
                )
            )
        return status == "succeeded"

    wait_for(final_run_done, 90, "the run after the kills", every=0.5)
    services.kill("worker")
    # Deliveries claimed by a killed worker wait for their lease to expire: let that time pass.
    settings = settings_for(env)
    dispatch_due(engine, settings, limit=100_000, now=datetime.now(UTC) + timedelta(hours=1))

    # Reference: the same records through one uninterrupted pass on a fresh database.
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    upgrade(reference_url)
    reference_settings = load_settings(
        pncp_base_url=replay.url, pncp_requests_per_second=200, alert_min_severity="low",
        alert_file=tmp_path / "reference-alerts.jsonl",
    )  # fmt: skip
    run_pass(engine_for(reference_url), reference_settings)

    with engine.connect() as connection:
        numbers = connection.scalars(select(RecordRow.control_number)).all()
        flagged = connection.scalar(select(RecordRow.id).where(RecordRow.needs_analysis).limit(1))
        outbox = connection.execute(
            select(AlertOutboxRow.idempotency_key, AlertOutboxRow.finding_id, AlertOutboxRow.payload,
                   AlertOutboxRow.status)
        ).all()  # fmt: skip
        finding_ids = set(connection.scalars(select(FindingRow.id)).all())
        # Evidence the kills landed inside passes: windows a dead worker left behind, or that a redelivery
        # had to start again.
        interrupted = connection.scalar(
            select(func.count()).where(
                JobRunRow.job == "monitor_contratacoes",
                or_(JobRunRow.status.in_(("running", "abandoned")), JobRunRow.attempts > 1),
            )
        )
    assert sorted(numbers) == sorted(r["numeroControlePNCP"] for r in records)
    assert flagged is None
    assert interrupted is not None
    assert interrupted >= 3
    expected = finding_keys(reference_url)
    assert len(expected) > 100
    assert finding_keys(pg_url) == expected

    # Every finding is announced by exactly one outbox row (alone or inside one group), all delivered.
    covered: Counter[int] = Counter()
    for _key, finding_id, payload, _status in outbox:
        if finding_id is not None:
            covered[finding_id] += 1
        elif payload["type"] == "findings.grouped":
            covered.update(payload["data"]["finding_ids"])
    assert set(covered) == finding_ids
    assert set(covered.values()) == {1}
    assert {row.status for row in outbox} == {"delivered"}
    lines = [json.loads(line) for line in Path(env["ALERT_FILE"]).read_text().splitlines()]
    delivered = Counter(line["id"] for line in lines)
    assert set(delivered) == {row.idempotency_key for row in outbox}
    # At-least-once delivery: a kill between writing an alert and recording it repeats that alert, with
    # the same id (the receiver's dedupe key); never more than one repeat per kill.
    assert sum(delivered.values()) - len(delivered) <= KILLS
