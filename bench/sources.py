"""Speed of the sources layer, each figure next to a baseline measured in the same process.

    python bench/sources.py [--generate 1000000] [--parse 200000] [--seed 7]

- generate: `write_jsonl` of N records (wall and CPU seconds); baseline: serialising and writing one fixed
  record N times, the floor any generator pays for JSON Lines output. Goal: 1,000,000 in under 60 s.
- parse: `parse_records` over generated raw dicts (validation, typed columns, content hash);
  baseline: `orjson.loads` of the same lines. Goal: >= 30,000 records/s on one core. Best of 3 runs.
- read: `read_records` of the JSON Lines file and of the same records as one `{"data": [...]}` page (streamed
  by the byte scanner); baseline: splitting lines and `orjson.loads` each.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from cidadao.domain.records import Record
from cidadao.sources.files import read_records
from cidadao.sources.generator import generate, write_jsonl
from cidadao.sources.pncp_schema import parse_records


def timed(work: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
    """Best wall and CPU seconds of `repeat` runs: on a shared machine the best run is the least disturbed."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generate", type=int, default=1_000_000)
    parser.add_argument("--parse", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.jsonl"
        wall, cpu, _ = timed(lambda: write_jsonl(path, args.generate, args.seed))
        print(
            f"generate  {args.generate:>9,} records  {wall:6.1f} s wall  {cpu:6.1f} s cpu"
            f"  {args.generate / wall:>9,.0f} rec/s wall"
        )
        record = next(generate(1, args.seed))
        floor = Path(folder) / "floor.jsonl"

        def write_floor() -> None:
            with floor.open("wb") as out:
                for _ in range(args.generate // 10_000):
                    out.write(b"\n".join([orjson.dumps(record)] * 10_000) + b"\n")

        base_wall, base_cpu, _ = timed(write_floor)
        print(
            f"  baseline (dump+write one record)  {base_wall:6.1f} s wall  {base_cpu:6.1f} s cpu;"
            f" generator/baseline cpu = {cpu / base_cpu:.1f}x"
        )

        with path.open("rb") as stream:
            lines = list(itertools.islice(stream, args.parse))
        count = len(lines)
        raws = [orjson.loads(line) for line in lines]
        # Streamed, as ingestion consumes it batch by batch (holding every Record would time the GC instead).
        wall, cpu, parsed = timed(
            lambda: sum(1 for item in parse_records(raws) if isinstance(item, Record)), 3
        )
        assert parsed == count
        _, loads_cpu, _ = timed(lambda: [orjson.loads(line) for line in lines], 3)
        print(
            f"parse     {count:>9,} records  {count / cpu:>9,.0f} rec/s cpu ({count / wall:,.0f} wall);"
            f" orjson.loads {count / loads_cpu:,.0f} rec/s cpu, parse/loads = {cpu / loads_cpu:.1f}x"
        )

        sample = Path(folder) / "sample.jsonl"
        sample.write_bytes(b"".join(lines))
        page = Path(folder) / "page.json"
        page.write_bytes(
            b'{"totalRegistros": %d, "data": [' % count
            + b",".join(line.rstrip(b"\n") for line in lines)
            + b"]}"
        )
        _, jsonl_cpu, read = timed(lambda: sum(1 for _ in read_records(sample)), 3)
        _, page_cpu, paged = timed(lambda: sum(1 for _ in read_records(page)), 3)
        assert read == paged == count
        _, base_cpu, _ = timed(lambda: sum(1 for line in sample.open("rb") if orjson.loads(line)), 3)
        print(
            f"read      jsonl {count / jsonl_cpu:>9,.0f} rec/s cpu; page {count / page_cpu:,.0f} rec/s cpu;"
            f" baseline loads per line {count / base_cpu:,.0f} rec/s cpu"
        )


if __name__ == "__main__":
    main()
