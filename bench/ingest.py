"""Ingestion throughput on PostgreSQL against a plain COPY of the same rows, in the same process.

    python bench/ingest.py [--records 100000] [--seed 7] [--database-url postgresql+psycopg://...]

Generates PNCP-shaped records, then in a fresh schema measures:
- `ingest_file` of the JSON Lines file (read + validate + upsert + quarantine + run counts), first load;
- the same file again (every record unchanged: the idempotent re-fetch path);
- both again with the file shared by two processes (`ingest_file(..., jobs=2)`, as `ingest file --jobs 2`);
- a plain psycopg COPY of the same typed rows and raw JSON into a table shaped like `records`.
Prints records per wall second and per CPU second (this process plus its PostgreSQL backends) of each, the CPU
per record split between Python and PostgreSQL, and the ratio of the first load to COPY. Goal: >= 20,000
records/s, >= 25 % of COPY. Also times read + validate alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson
import psutil
from sqlalchemy import Engine, create_engine, event, text

from cidadao.domain.records import RECORD_COLUMNS, Record
from cidadao.monitor.ingest import ingest_file
from cidadao.sources.files import read_records
from cidadao.sources.generator import write_jsonl
from cidadao.sources.pncp_schema import parse_records
from cidadao.store.db import engine_for, upgrade
from cidadao.store.repositories import WRITTEN_COLUMNS

DEFAULT_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.database_url}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "records.jsonl"
            started = time.perf_counter()
            write_jsonl(path, args.records, args.seed)
            print(f"generated {args.records:,} records in {time.perf_counter() - started:.1f} s")
            run(url, path)
    finally:
        engine_for.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


class Meter:
    """Wall time and CPU time (this process plus its PostgreSQL backends): the CPU figure shows the cost
    per record even when other work shares the machine and stretches the wall time."""

    def __init__(self, engine: Engine) -> None:
        self.backends: set[int] = set()
        event.listen(engine, "connect", self._remember_backend)

    def _remember_backend(self, dbapi_connection: Any, _record: Any) -> None:
        self.backends.add(dbapi_connection.info.backend_pid)

    def _cpu(self) -> tuple[float, float]:
        """(this process, its PostgreSQL backends) user + system CPU seconds."""
        backends = 0.0
        for pid in self.backends:
            with contextlib.suppress(psutil.Error):
                backends += sum(psutil.Process(pid).cpu_times()[:2])
        return sum(psutil.Process().cpu_times()[:2]), backends

    @contextlib.contextmanager
    def measure(self, label: str, results: list[tuple[str, float, float, float]]) -> Iterator[None]:
        wall, (process, backends) = time.perf_counter(), self._cpu()
        yield
        now, (process_now, backends_now) = time.perf_counter(), self._cpu()
        results.append((label, now - wall, process_now - process, backends_now - backends))


def run(url: str, path: Path) -> None:
    upgrade(url)
    engine = engine_for(url)
    meter = Meter(engine)
    results: list[tuple[str, float, float, float]] = []

    with meter.measure("ingest_file, first load", results):
        first = ingest_file(engine, path)
    with meter.measure("ingest_file, unchanged", results):
        again = ingest_file(engine, path)
    assert again.unchanged == first.ingested == first.fetched, (first.counts(), again.counts())
    # The same two loads shared by two processes (`--jobs 2`), into emptied tables.
    with engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE records, buyers, suppliers, quarantine CASCADE")
    with meter.measure("first load, 2 processes", results):
        shared = ingest_file(engine, path, jobs=2)
    with meter.measure("unchanged, 2 processes", results):
        shared_again = ingest_file(engine, path, jobs=2)
    assert shared.counts() == first.counts(), shared.counts()
    assert shared_again.counts() == again.counts(), shared_again.counts()
    with meter.measure("read + validate only", results):
        records = [item for item in parse_records(read_records(path)) if isinstance(item, Record)]
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE records_copy (LIKE records INCLUDING ALL)")
        connection.commit()
        with meter.measure("plain COPY, same rows", results):
            copy_rows(connection.connection.driver_connection, records)
    engine.dispose()

    count = len(records)
    header = f"{'wall s':>7} {'rec/s':>8}   {'CPU s':>7} {'rec/CPU-s':>9}   {'us/rec: Python':>14} {'PG':>4}"
    print(f"{'':<24}  {header}")
    for label, wall, process, backends in results:
        cpu = process + backends
        if "processes" in label:  # the share processes and their backends are not metered
            print(f"{label:<24}: {wall:7.2f} {count / wall:8,.0f}")
            continue
        print(
            f"{label:<24}: {wall:7.2f} {count / wall:8,.0f}   {cpu:7.2f} {count / cpu:9,.0f}   "
            f"{process / count * 1e6:14.0f} {backends / count * 1e6:4.0f}"
        )
    timing = {label: (wall, process + backends) for label, wall, process, backends in results}
    (load_wall, load_cpu), (copy_wall, copy_cpu) = (
        timing["ingest_file, first load"],
        timing["plain COPY, same rows"],
    )
    print(f"first load / COPY, wall : {copy_wall / load_wall:.1%}")
    print(f"first load / COPY, CPU  : {copy_cpu / load_cpu:.1%}")
    print(f"2 processes / COPY, wall: {copy_wall / timing['first load, 2 processes'][0]:.1%}")
    one, five, _ = os.getloadavg()
    print(f"load average (1, 5 min) : {one:.1f}, {five:.1f} on {os.cpu_count()} CPUs")


def copy_rows(connection: Any, records: list[Record]) -> None:
    """COPY the typed columns and raw JSON of `records` into `records_copy`, shaped like `records`, the plain
    way: psycopg adapts each value of each row."""
    columns = ", ".join(WRITTEN_COLUMNS)
    typed = attrgetter(*RECORD_COLUMNS[1:])  # after `kind`
    with connection.cursor() as cursor, cursor.copy(f"COPY records_copy ({columns}) FROM STDIN") as copy:
        for record in records:
            warnings = orjson.dumps(record.warnings).decode() if record.warnings else None
            copy.write_row(
                (record.kind.value, *typed(record), warnings, orjson.dumps(record.raw).decode(), "file")
            )
    connection.commit()


if __name__ == "__main__":
    main()
