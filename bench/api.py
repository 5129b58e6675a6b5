"""API throughput and latency on PostgreSQL with 1,000,000 findings, next to a bare ASGI app, same run.

    python bench/api.py [--findings 1000000] [--duration 10] [--connections 16] [--database-url ...]

Loads findings (and the records they flag) with COPY into a fresh schema, starts `uvicorn --workers 2` with
the app factory and, on another port, a bare ASGI app answering a constant; then drives each with wrk
(closed loop, loopback) and prints req/s, p50 and p99 for `/health`, `/v1/findings?severity=high` (first page
and a deep cursor page), `/v1/findings/{id}` (random ids) and the bare app, with each one's share of the
bare app's throughput. Goal: >= 2,000 req/s, p99 <= 50 ms on the findings list, >= 50 % of the bare app.
The uncached pages run again paced to about 2,000 req/s (wrk's per-request delay), for p99 at that rate.
The API's workers share their metrics through PROMETHEUS_MULTIPROC_DIR, as under `cidadao serve --workers 2`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
from sqlalchemy import create_engine, text

from cidadao.store.db import upgrade

DEFAULT_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RULES = ("split_purchase", "over_limit", "near_limit", "value_outlier", "supplier_concentration")
SEVERITIES = ("low", "medium", "high", "critical")
UFS = ("SP", "RJ", "MG", "BA", "PE", "RS", "PR", "CE", "GO", "AM")
RECORDS_PER_FINDING = 5
_BODY = b'{"status":"ok"}'
APPLICATION = "cidadao_bench_api"  # application_name of the API's connections, to find their backends


async def bare_app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    """The baseline: the smallest ASGI app uvicorn can serve, a constant JSON body."""
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": _BODY})  # type: ignore[operator]


def load(dsn: str, findings: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    records = max(findings // RECORDS_PER_FINDING, 1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        columns = "kind, control_number, buyer_cnpj, buyer_name, uf, year, sequence, modalidade_id, "
        columns += "object, value_estimated, published_at, content_hash, raw, source"
        with cursor.copy(f"COPY records ({columns}) FROM STDIN") as copy:
            for n in range(records):
                buyer = f"{n % 5000:014d}"
                control = f"{buyer}-1-{n:06d}/2025"
                copy.write_row(
                    (
                        "contratacao",
                        control,
                        buyer,
                        f"Prefeitura {n % 5000}",
                        UFS[n % len(UFS)],
                        2025,
                        n + 1,
                        8,
                        f"Aquisição {n}",
                        1000 + n % 90000,
                        datetime(2025, 1, 1) + timedelta(hours=n),
                        f"{n:064x}"[-64:],
                        json.dumps({"numeroControlePNCP": control}),
                        "bench",
                    )
                )
        columns = "record, rule, rule_version, severity, score, message, evidence, legal_basis, status, "
        columns += "buyer_cnpj, supplier_id, uf, value, created_at, updated_at"
        with cursor.copy(f"COPY findings ({columns}) FROM STDIN") as copy:
            for n in range(findings):
                record = n % records
                buyer = f"{record % 5000:014d}"
                created = start + timedelta(seconds=n * 30)
                copy.write_row(
                    (
                        f"{buyer}-1-{record:06d}/2025",
                        RULES[n % len(RULES)],
                        str(n // records + 1),
                        SEVERITIES[rng.randrange(4)],
                        round(rng.random(), 4),
                        f"Contratação com valor R$ {n:,} acima do esperado.",
                        f'{{"value": {n}}}',
                        "Lei 14.133/2021, art. 75",
                        "new",
                        buyer,
                        f"{n % 20000:014d}",
                        UFS[n % len(UFS)],
                        1000 + n % 90000,
                        created,
                        created,
                    )
                )
    # As a table in service would be: vacuumed (visibility map, hint bits) and checkpointed, so the
    # measurement does not include autovacuum and the checkpoint that follow a bulk load.
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) findings")
        connection.execute("VACUUM (ANALYZE) records")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # needs a superuser
            connection.execute("CHECKPOINT")
    print(f"loaded {findings:,} findings and {records:,} records in {time.perf_counter() - started:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(target: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", *target, "--port", str(port), "--workers", "2"]
    command += ["--no-access-log", "--log-level", "warning", "--host", "127.0.0.1"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, duration: int, connections: int, script: Path | None = None) -> dict[str, float]:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(latency["50"]),
        "p99": _ms(latency["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def _cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time of a uvicorn master and its workers (PostgreSQL's share is not included)."""
    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def _pg_cpu_seconds(dsn: str, application: str) -> dict[int, float]:
    """CPU time of the PostgreSQL backends serving the API (found by application_name), by pid."""
    with psycopg.connect(dsn) as connection:
        pids = [
            pid
            for (pid,) in connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
            )
        ]
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # ended, or not readable by this user
            continue
        seconds[pid] = times.user + times.system
    return seconds


def _lua(path: Path, target: str) -> Path:
    path.write_text(f'request = function() return wrk.format("GET", {target}) end\n')
    return path


def deep_cursor(base: str, before_id: int) -> str:
    """A cursor far down the list: the API's own cursor for page 1, moved to `before_id`."""
    with urllib.request.urlopen(f"{base}/v1/findings?severity=high&limit=50") as response:
        cursor = json.load(response)["next_cursor"]
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["k"] = [before_id]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--findings", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--paced-rate", type=int, default=2000, help="offered req/s of the paced runs")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required (apt-get install wrk)")

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.database_url}?options=-csearch_path%3D{schema}"
    servers: list[subprocess.Popen[bytes]] = []
    metrics_dir = ""
    try:
        upgrade(url)
        load(url.replace("postgresql+psycopg://", "postgresql://"), args.findings)
        env = {
            **os.environ,
            "DATABASE_URL": f"{url}&application_name={APPLICATION}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_PER_MINUTE": "1000000000",
            "REDIS_URL": "",
        }
        api_port, bare_port = free_port(), free_port()
        # As deployed (`cidadao serve --workers 2`): metrics summed over the workers through files.
        metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
        api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        servers.append(serve(["--factory", "cidadao.api.app:serve_app"], api_port, api_env))
        bench_dir = str(Path(__file__).resolve().parent)
        servers.append(serve(["--app-dir", bench_dir, "api:bare_app"], bare_port, env))
        api = f"http://127.0.0.1:{api_port}"
        with tempfile.TemporaryDirectory() as folder:
            by_id = _lua(Path(folder) / "by_id.lua", f'"/v1/findings/" .. math.random(1, {args.findings})')
            first = "/v1/findings?severity=high"
            deep = f"{first}&cursor={deep_cursor(api, args.findings // 10)}"
            # An ignored parameter that changes every request defeats the list cache (API_LIST_CACHE_SECONDS).
            uncached = _lua(Path(folder) / "first.lua", f'"{first}&n=" .. math.random(1, 1e9)')
            uncached_deep = _lua(Path(folder) / "deep.lua", f'"{deep}&n=" .. math.random(1, 1e9)')
            bare, app = servers[1], servers[0]
            cases = [
                ("bare ASGI app (baseline)", f"http://127.0.0.1:{bare_port}/", None, bare),
                ("/health", f"{api}/health", None, app),
                ("/v1/findings?severity=high, first page, list cache on", f"{api}{first}", None, app),
                ("/v1/findings?severity=high, first page, no cache", api, uncached, app),
                ("/v1/findings?severity=high, deep cursor page, no cache", api, uncached_deep, app),
                ("/v1/findings/{id}, random id", api, by_id, app),
            ]
            for _name, target, lua, _server in cases:  # warm-up: pools, caches, PostgreSQL buffers
                wrk(target, 2, args.connections, lua)
            results = []
            dsn = args.database_url.replace("postgresql+psycopg://", "postgresql://")
            for name, target, lua, server in cases:
                cpu, pg = _cpu_seconds(server), _pg_cpu_seconds(dsn, APPLICATION)
                figures = wrk(target, args.duration, args.connections, lua)
                requests = figures["rps"] * args.duration
                pg_after = _pg_cpu_seconds(dsn, APPLICATION)
                pg_used = sum(value - pg.get(pid, 0.0) for pid, value in pg_after.items())
                figures["cpu_ms"] = (_cpu_seconds(server) - cpu) * 1000 / requests if requests else 0.0
                figures["pg_ms"] = pg_used * 1000 / requests if requests else 0.0
                results.append((name, figures))
            # The same uncached pages at about the goal's rate: each connection waits between requests so
            # that the offered load is ~--paced-rate req/s; p99 then shows latency without saturation.
            for name, target, lua, _server in cases[3:]:
                saturated = dict(results)[name]["rps"]
                wait_ms = max(0, round(1000 * args.connections * (1 / args.paced_rate - 1 / saturated)))
                assert lua is not None
                paced = lua.with_suffix(".paced.lua")
                paced.write_text(lua.read_text() + f"delay = function() return {wait_ms} end\n")
                figures = wrk(target, args.duration, args.connections, paced)
                results.append((f"{name}, paced (~{args.paced_rate:,} req/s offered)", figures))
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    baseline = results[0][1]["rps"]
    print(
        f"\n{args.findings:,} findings, uvicorn --workers 2, wrk -t2 -c{args.connections} -d{args.duration}s"
    )
    print("| endpoint | req/s | p50 ms | p99 ms | vs bare | server CPU ms/req | PG CPU ms/req | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, figures in results:
        cpu = [f"{figures[key]:.3f}" if key in figures else "-" for key in ("cpu_ms", "pg_ms")]  # not paced
        print(
            f"| {name} | {figures['rps']:,.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} "
            f"| {figures['rps'] / baseline:.0%} | {cpu[0]} | {cpu[1]} | {figures['non_2xx']:.0f} |"
        )


if __name__ == "__main__":
    main()
