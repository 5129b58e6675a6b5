"""Alert outbox cost: enqueue and dispatch throughput against raw HTTP posts, in the same process.

    python bench/alerts.py [--alerts 2000] [--database-url postgresql+psycopg://...]

Against a local HTTP receiver answering 204 at once, on a fresh PostgreSQL schema and a SQLite file:
- `enqueue_alerts` for N new critical findings (one generic webhook channel): rows/s;
- `dispatch_due` until the outbox is drained (claim, sign, POST, record each row): alerts/s;
- baseline: the same N signed bodies POSTed with one httpx client and no database.
Prints the figures and dispatch / baseline ratios (the price of never losing an alert).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, text

from cidadao.alerts.channels.webhook import sign
from cidadao.alerts.dispatcher import dispatch_due
from cidadao.alerts.outbox import enqueue_alerts
from cidadao.config import load_settings
from cidadao.domain.records import Finding, Severity
from cidadao.store.db import make_engine, transaction, upgrade
from cidadao.store.repositories import save_findings

DEFAULT_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SECRET = "bench-secret"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _findings(count: int) -> list[Finding]:
    return [
        Finding("bench_rule", "1", f"{10**13 + i:014d}-1-000001/2025", Severity.CRITICAL, 0.9,
                "Indício de teste de desempenho.", {"i": i}, None)
        for i in range(count)
    ]  # fmt: skip


def _run(url: str, hook: str, count: int) -> dict[str, float]:
    settings = load_settings(
        alert_webhooks=[hook], alert_allowed_hosts=["localhost"], alert_webhook_secret=SECRET
    )
    upgrade(url)
    engine = make_engine(url)
    with transaction(engine) as session:
        ids = save_findings(session, _findings(count), None)
    started = time.perf_counter()
    with transaction(engine) as session:
        enqueue_alerts(session, ids, settings)
    enqueue = time.perf_counter() - started
    started = time.perf_counter()
    delivered = 0
    while delivered < count:
        stats = dispatch_due(engine, settings, limit=500)
        delivered += stats.delivered
        if not stats.claimed:
            raise RuntimeError("outbox not drained")
    dispatch = time.perf_counter() - started
    engine.dispose()
    return {"enqueue_per_s": count / enqueue, "dispatch_per_s": count / dispatch}


def _baseline(hook: str, count: int) -> float:
    bodies = [
        orjson.dumps({"version": "1", "type": "finding.created", "data": {"i": i}}) for i in range(count)
    ]
    started = time.perf_counter()
    with httpx.Client(trust_env=False) as client:
        for i, body in enumerate(bodies):
            key, stamp = f"bench-{i}", int(time.time())
            headers = {"webhook-id": key, "webhook-timestamp": str(stamp),
                       "webhook-signature": sign(SECRET, key, stamp, body)}  # fmt: skip
            client.post(hook, content=body, headers=headers).raise_for_status()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://localhost:{server.server_address[1]}/hook"
    os.chdir(tempfile.mkdtemp())

    baseline = _baseline(hook, args.alerts)
    print(f"baseline raw signed POSTs: {baseline:,.0f}/s")

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        runs = {
            "postgresql": _run(f"{args.database_url}?options=-csearch_path%3D{schema}", hook, args.alerts),
            "sqlite": _run("sqlite:///bench.sqlite", hook, args.alerts),
        }
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        server.shutdown()
    for name, figures in runs.items():
        ratio = figures["dispatch_per_s"] / baseline
        print(
            f"{name:10s} enqueue {figures['enqueue_per_s']:>9,.0f} rows/s   "
            f"dispatch {figures['dispatch_per_s']:>7,.0f} alerts/s   dispatch/baseline {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
