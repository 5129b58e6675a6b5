"""Monitor throughput: records/s of whole monitor passes, from fetch (local PNCP replay) to findings.

    python bench/monitor_throughput.py --records 100000 [--database-url URL]

1. One pass over N new generated records published today (fetch every page over HTTP from the replay,
   validate, upsert, analyse the touched peer groups, write findings and outbox rows, dispatch).
2. A pass with nothing new (the steady-state cost of a 5-minute tick: today's pages are re-read).
3. 1% more new records: their incremental analysis (only their peer groups are loaded) against the
   baseline of the seed's approach, in the same process: re-analysing every stored record.
Default database: a fresh schema in the local PostgreSQL `test` database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import create_engine, text

from cidadao.config import load_settings
from cidadao.monitor.analysis import analyse_changed, analyse_where, rules_by_scope
from cidadao.monitor.ingest import ingest_raw
from cidadao.monitor.pipeline import run_pass
from cidadao.sources.generator import generate
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import engine_for, upgrade

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", help="default: a temporary schema in the local PostgreSQL")
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    url = args.database_url
    if url is None:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG}?options=-csearch_path%3D{schema}"
    try:
        run(url, args.records, args.seed)
    finally:
        engine_for.cache_clear()
        if args.database_url is None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def run(url: str, count: int, seed: int) -> None:
    upgrade(url)
    engine = engine_for(url)
    today = date.today()
    extra = max(1, count // 100)
    records = list(generate(count + extra, seed, start=today, end=today))
    first, later = records[:count], records[count:]
    modalidades = sorted({int(r["modalidadeId"]) for r in records if r.get("modalidadeId") is not None})
    with TemporaryDirectory() as directory, ReplayServer(first) as replay:
        settings = load_settings(
            database_url=url,
            pncp_base_url=replay.url,
            pncp_modalidades=",".join(map(str, modalidades)),
            pncp_requests_per_second=1000,
            alert_file=Path(directory) / "alerts.jsonl",
        )
        started = time.perf_counter()
        cpu = time.process_time()
        full = run_pass(engine, settings)
        full_wall, full_cpu = time.perf_counter() - started, time.process_time() - cpu

        # Steady state: a pass with nothing new still re-reads today's pages (PNCP filters by date only).
        started = time.perf_counter()
        idle = run_pass(engine, settings)
        idle_wall = time.perf_counter() - started

        ingest_raw(engine, "pncp", later)
        started = time.perf_counter()
        incremental = analyse_changed(engine, settings)
        incremental_wall = time.perf_counter() - started
        started = time.perf_counter()
        baseline = analyse_where(engine, settings, [text("1 = 1")], rules_by_scope(global_scope=False))
        baseline_wall = time.perf_counter() - started

    fetched = full.ingest["fetched"]
    print(f"records generated today: {count:,} (+{extra:,} later); modalidades fetched: {modalidades}")
    print(
        f"full pass        : {fetched:,} fetched, {full.analysis['findings']:,} findings, "
        f"{full.analysis['alerts']:,} alerts in {full_wall:.1f} s wall ({full_cpu:.1f} s CPU in this process)"
        f" -> {fetched / full_wall:,.0f} records/s fetch-to-findings"
    )
    print(f"pass, nothing new: {idle.ingest['fetched']:,} re-fetched, all unchanged, {idle_wall:.1f} s")
    print(
        f"incremental      : {incremental.changed:,} new records, {incremental.loaded:,} loaded with their "
        f"peer groups, analysed and stored in {incremental_wall:.2f} s"
    )
    print(f"baseline         : re-analyse all {baseline.loaded:,} stored records, {baseline_wall:.2f} s")
    print(f"ratio            : baseline / incremental = {baseline_wall / incremental_wall:.1f}x")


if __name__ == "__main__":
    main()
