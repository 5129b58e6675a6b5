"""Time to alert: publication on (a local replay of) PNCP -> alert received by a local webhook.

    python bench/time_to_alert.py [--interval S] [--poll-interval S] [--records 12] [--spread S]

Runs the real system: a Celery worker and the singleton beat as subprocesses (broker: a private
redis-server on a free port when installed, else the embedded SQLAlchemy broker), a fresh SQLite database,
the PNCP replay, and an HTTP receiver registered in ALERT_WEBHOOKS. Records (each a dispensa far above the
legal limit, one buyer each, so each gives its own critical alert) are published at random moments over
`--spread` seconds; latency is from publication to the webhook delivery naming that record.
`--interval` is MONITOR_INTERVAL_SECONDS (the full pass) and `--poll-interval` POLL_INTERVAL_SECONDS (the
fast path fetching only what PNCP appended); either left out keeps the settings default. Also printed: the
requests PNCP served per minute and the load average. Baseline printed alongside: the seed's 6-hour polling,
whose expected wait is 3 h (p50) and 5.7 h (p95) for the same uniform arrivals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cidadao.config import Settings
from cidadao.monitor.ingest import PNCP_TZ
from cidadao.runtime.supervisor import beat_command, worker_command
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import upgrade

SEED_INTERVAL = 6 * 3600


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.arrivals: dict[str, float] = {}


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.time()
        payload: dict[str, Any] = json.loads(body or b"{}")
        for finding in _findings(payload):
            self.server.arrivals.setdefault(str(finding.get("record")), now)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


def _findings(payload: dict[str, Any]) -> list[dict[str, Any]]:
    data = payload.get("data") or {}
    if "finding" in data:
        return [data["finding"]]
    return list(data.get("findings") or [])


def dispensa(number: int) -> dict[str, Any]:
    now = datetime.now(PNCP_TZ).replace(tzinfo=None, microsecond=0) - timedelta(seconds=1)
    cnpj = f"{20_000_000 + number:08d}000188"
    return {
        "numeroControlePNCP": f"{cnpj}-1-{number:06d}/{now.year}",
        "anoCompra": now.year,
        "sequencialCompra": number,
        "modalidadeId": 8,
        "modalidadeNome": "Dispensa",
        "objetoCompra": "Aquisição de equipamentos hospitalares",
        "valorTotalEstimado": 950_000.0,
        "valorTotalHomologado": 950_000.0,
        "dataPublicacaoPncp": now.isoformat(),
        "dataAtualizacao": now.isoformat(),
        "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
        "orgaoEntidade": {"cnpj": cnpj, "razaoSocial": f"MUNICIPIO BENCH {number}", "esferaId": "M"},
        "unidadeOrgao": {"ufSigla": "PI", "codigoUnidade": "1", "municipioNome": "Bench"},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    parser.add_argument("--interval", type=int, help="MONITOR_INTERVAL_SECONDS (default: the setting's)")
    parser.add_argument("--poll-interval", type=int, help="POLL_INTERVAL_SECONDS (default: the setting's)")
    parser.add_argument("--records", type=int, default=12)
    parser.add_argument("--spread", type=float, help="publish over this many seconds (default: 2 intervals)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    interval = args.interval or int(defaults["monitor_interval_seconds"])
    poll = args.poll_interval or int(defaults["poll_interval_seconds"])
    spread = args.spread or 2 * interval
    rng = random.Random(args.seed)

    directory = Path(tempfile.mkdtemp(prefix="tta-"))
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    children: list[subprocess.Popen[bytes]] = []
    with ReplayServer() as replay:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite'}",
            "EMBEDDED_BROKER_URL": f"sqla+sqlite:///{directory / 'broker.sqlite'}",
            "PNCP_BASE_URL": replay.url,
            "ALERT_WEBHOOKS": f"http://127.0.0.1:{receiver.server_port}/hook",
            "ALERT_ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
        }
        overrides = {"MONITOR_INTERVAL_SECONDS": args.interval, "POLL_INTERVAL_SECONDS": args.poll_interval}
        env.update({name: str(value) for name, value in overrides.items() if value is not None})
        if shutil.which("redis-server"):
            port = free_port()
            children.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--save", "", "--dir", str(directory)],
                stdout=subprocess.DEVNULL, start_new_session=True,
            ))  # fmt: skip
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        upgrade(env["DATABASE_URL"])
        log = (directory / "services.log").open("ab")
        for argv in (worker_command(concurrency=2), beat_command()):
            children.append(
                subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )
        try:
            time.sleep(10)  # services up, first (empty) pass done
            moments = sorted(rng.uniform(0, spread) for _ in range(args.records))
            published: dict[str, float] = {}
            began = time.time()
            load_start = os.getloadavg()
            skipped = len(replay.requests)  # the startup passes
            for number, moment in enumerate(moments, start=1):
                time.sleep(max(0.0, began + moment - time.time()))
                record = dispensa(number)
                replay.publish([record])
                published[record["numeroControlePNCP"]] = time.time()
            deadline = time.time() + min(interval, poll) + 120
            while (
                len(receiver.arrivals.keys() & published.keys()) < len(published) and time.time() < deadline
            ):
                time.sleep(0.5)
            minutes = (time.time() - began) / 60
            served = [name for name, _ in replay.requests[skipped:]]
        finally:
            for child in children:  # each in its own session: the worker's pool children go too
                os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                child.wait(timeout=30)
            receiver.shutdown()
    latencies = [receiver.arrivals[key] - at for key, at in published.items() if key in receiver.arrivals]
    missing = len(published) - len(latencies)
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    print(f"MONITOR_INTERVAL_SECONDS={interval}, POLL_INTERVAL_SECONDS={poll}"
          f" ({'overridden' if args.interval or args.poll_interval else 'defaults'}),"
          f" {len(published)} records published over {spread:.0f} s,"
          f" broker: {'redis' if 'REDIS_URL' in env else 'embedded sqlalchemy'}")  # fmt: skip
    load = " ".join(f"{value:.2f}" for value in (*load_start, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) at the first publication, then at the end: {load}")
    rates = {name: served.count(name) / minutes for name in sorted(set(served))}
    print(
        "PNCP requests per minute after startup:",
        ", ".join(f"{k} {v:.1f}" for k, v in rates.items()),
    )
    print(f"time to alert: p50 {p50:.1f} s, p95 {p95:.1f} s, max {max(latencies):.1f} s,"
          f" mean {statistics.mean(latencies):.1f} s; not alerted: {missing}")  # fmt: skip
    print(f"seed baseline (6 h polling): p50 {SEED_INTERVAL / 2:.0f} s, p95 {0.95 * SEED_INTERVAL:.0f} s ->"
          f" {SEED_INTERVAL / 2 / p50:,.0f}x and {0.95 * SEED_INTERVAL / p95:,.0f}x faster")  # fmt: skip
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
