"""kill -9 of the dispatcher in the middle of a batch: afterwards every alert was received once by key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.alerts.conftest import HOOK_PATH, AddFindings, Receiver, Reply, make_finding
from tests.alerts.helpers import SECRET, alert_settings

from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import enqueue_alerts
from cidadao.domain.records import Severity
from cidadao.store.db import engine_for, transaction
from cidadao.store.models import AlertOutboxRow

ALERTS = 10


@pytest.mark.postgres
@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_delivers_each_alert_once(
    pg_url: str, add_findings_pg: AddFindings, receiver: Receiver, tmp_path: Path
) -> None:
    settings = alert_settings(alert_webhooks=[receiver.url(HOOK_PATH)])
    engine = engine_for(pg_url)
    records = [f"{10000000000000 + i:014d}-1-000001/2025" for i in range(ALERTS)]
    ids = add_findings_pg(*(make_finding(r, severity=Severity.CRITICAL) for r in records))
    with transaction(engine) as session:
        assert enqueue_alerts(session, ids, settings) == ALERTS
    receiver.defaults[HOOK_PATH] = Reply(200, delay=0.5)  # slow receiver: the kill lands mid-batch

    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": pg_url,
        "ALERT_WEBHOOKS": receiver.url(HOOK_PATH),
        "ALERT_ALLOWED_HOSTS": "localhost",
        "ALERT_WEBHOOK_SECRET": SECRET,
    }
    dispatcher = subprocess.Popen(
        [sys.executable, "-c", "from cidadao.cli import main; main()", "alerts", "dispatch"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(receiver.at(HOOK_PATH)) < 4:
        assert dispatcher.poll() is None, dispatcher.stderr.read() if dispatcher.stderr else ""
        assert time.monotonic() < deadline, "dispatcher never reached the receiver"
        time.sleep(0.01)
    os.kill(dispatcher.pid, signal.SIGKILL)  # while the 4th delivery waits for its answer
    dispatcher.wait(timeout=10)
    if dispatcher.stderr:
        dispatcher.stderr.close()
    sent = [r.headers["webhook-id"] for r in receiver.at(HOOK_PATH)]
    in_flight = sent[-1]

    with transaction(engine) as session:
        rows = list(session.scalars(select(AlertOutboxRow)))
    delivered_before = {r.idempotency_key for r in rows if r.status == "delivered"}
    stranded = [r for r in rows if r.status == "pending" and r.claimed_until is not None]
    # Every answered request was recorded before the next was sent; the unanswered one was not.
    assert delivered_before == set(sent[:-1])
    assert len(delivered_before) < ALERTS
    assert len(stranded) == ALERTS - len(delivered_before)  # claimed by the dead process, leased

    # A restarted dispatcher now sees nothing due (leases hold), and takes over once they expire.
    assert dispatch_due(engine, settings).claimed == 0
    after_lease = datetime.now(UTC) + timedelta(hours=1)
    stats = dispatch_due(engine, settings, now=after_lease)
    assert stats.delivered == ALERTS - len(delivered_before)

    raw = Counter(r.headers["webhook-id"] for r in receiver.at(HOOK_PATH))
    assert len(raw) == ALERTS  # distinct ids == alerts: every alert arrived
    duplicates = {key for key, count in raw.items() if count > 1}
    # Only the one in flight at the kill was sent twice; the receiver drops it by webhook-id.
    assert duplicates == {in_flight}
    assert sum(raw.values()) == ALERTS + 1
    with transaction(engine) as session:
        statuses = Counter(session.scalars(select(AlertOutboxRow.status)))
    assert statuses == {"delivered": ALERTS}
