"""Speed of the red-flag engine on generated records, each figure next to a baseline in the same process.

    python bench/redflags.py [--records 1000000] [--seed 7] [--no-pandas]

- baseline (a): `orjson.loads` of every line of the JSON Lines file (the floor of any reader of the file);
- load: `dataset_from_ndjson` (typed polars frames, split by kind chunk by chunk), then the derived frames
  (direct awards, contratos joined with their contratação) that indicators share;
- rules: all registered indicators through `run_rules`, wall time per indicator and in total, findings built;
- baseline (b): an idiomatic pandas version of over_limit, split_purchase and repeat_supplier on the same
  typed data (converted once, not timed), building finding dicts with messages for the same records (checked:
  the sorted lists of flagged records must be equal, else DIFFERENT is printed); per rule
  the polars rule alone and its pandas version run alternately, one warm-up run of each and then 5 timed runs
  of each, and the medians (minima in parentheses) are compared;
- peak RSS of the process (before pandas, and at the end);
- CPU seconds of the process next to each wall time, and the load average, since the machine is shared.

Goals: all indicators in <= 2x the orjson parse time, >= 10x faster than pandas on the three rules,
<= 2 GiB peak RSS. The generated file is cached under bench/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, MODALIDADE_DISPENSA
from cidadao.redflags.base import Dataset
from cidadao.redflags.engine import run_rules
from cidadao.redflags.frame import dataset_from_ndjson
from cidadao.redflags.limits import AMPARO_CODES, legal_citation, limits_frame
from cidadao.redflags.text import cents, day, document, link, money
from cidadao.sources.generator import write_jsonl

OUT = Path(__file__).parent / "out"
PANDAS_RULES = ("over_limit", "split_purchase", "repeat_supplier")
REPEATS = 5  # timed runs of each side per rule, after one warm-up run of each (medians of 3 moved ±15 %)
INCISO = r"(?i)art(?:igo)?\.?\s*75\s*,?\s*(?:inciso\s*)?([ivxl]+)\b"
UNIT = ["buyer_cnpj", "unit_code", "limit_year", "inciso", "doubled"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def cpu_timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (all threads, user + system) and the result."""
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - started, time.process_time() - cpu, result


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median CPU seconds of (wall, CPU) runs."""
    return statistics.median(wall for wall, _ in runs), statistics.median(cpu for _, cpu in runs)


def spread(runs: list[tuple[float, float]]) -> str:
    """`median wall [median CPU] (min wall [min CPU])` of (wall, CPU) runs."""
    wall, cpu = medians(runs)
    least_wall, least_cpu = min(wall for wall, _ in runs), min(cpu for _, cpu in runs)
    return f"{wall:6.3f} [{cpu:5.2f}] ({least_wall:.3f} [{least_cpu:.2f}])"


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def orjson_parse(path: Path) -> int:
    count = 0
    loads = orjson.loads
    with path.open("rb") as lines:
        for line in lines:
            loads(line)
            count += 1
    return count


# --- pandas baseline: the same rules written the usual pandas way -------------------------------------------


def pandas_with_limits(contratacoes: pd.DataFrame) -> pd.DataFrame:
    d = contratacoes[contratacoes["modalidade_id"] == MODALIDADE_DISPENSA].copy()
    from_name = d["amparo_name"].str.extract(INCISO, expand=False).str.upper()
    d["inciso"] = from_name.where(d["amparo_name"].notna(), d["amparo_code"].map(AMPARO_CODES))
    d = d[d["inciso"].isin(["I", "II"])].copy()
    d["limit_year"] = d["published_at"].dt.year.fillna(d["year"]).astype("Int64")
    plain = d["buyer_name"].fillna("").str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    d["doubled"] = plain.str.lower().str.contains(r"\bconsorcio")
    limits = to_pandas(limits_frame()).rename(columns={"year": "limit_year"})
    limits["limit_year"] = limits["limit_year"].astype("Int64")
    d = d.merge(limits, on=["limit_year", "inciso"], how="left")
    d["limit"] = d["limit"].where(~d["doubled"], d["limit"] * 2).round(2)
    return d


def pandas_over_limit(contratacoes: pd.DataFrame, contratos: pd.DataFrame) -> list[dict[str, Any]]:
    d = pandas_with_limits(contratacoes)
    usable = d[d["value"].notna() & d["limit"].notna()]
    purchases = usable[usable["value"] >= usable["limit"]]
    parents = usable[~usable["control_number"].isin(purchases["control_number"])]
    parents = parents[["control_number", "inciso", "limit_year", "doubled", "limit", "act"]].rename(
        columns={"control_number": "purchase_control_number"}
    )
    contracts = contratos.merge(parents, on="purchase_control_number")
    contracts = contracts[contracts["value"] >= contracts["limit"]]
    findings = []
    for kind, rows in (("contratacao", purchases), ("contrato", contracts)):
        for row in rows.itertuples(index=False):
            citation = legal_citation(row.inciso, row.act, row.doubled)
            findings.append(
                {
                    "rule": "over_limit",
                    "record": row.control_number,
                    "severity": "critical" if row.value >= 2 * row.limit else "high",
                    "message": f"Dispensa de {money(row.value)} acima do limite de {money(row.limit)} "
                    f"vigente em {row.limit_year} ({citation})",
                    "evidence": {
                        "value": cents(row.value),
                        "limit": cents(row.limit),
                        "link": link(kind, row.buyer_cnpj, row.year, row.sequence),
                    },
                }
            )
    return findings


def pandas_split_purchase(contratacoes: pd.DataFrame, contratos: pd.DataFrame) -> list[dict[str, Any]]:
    d = pandas_with_limits(contratacoes)
    under = d[d["value"].notna() & d["limit"].notna() & (d["value"] < d["limit"])]
    suppliers = (
        contratos[["purchase_control_number", "supplier_id"]]
        .dropna()
        .drop_duplicates()
        .rename(columns={"purchase_control_number": "control_number", "supplier_id": "key"})
    )
    by_supplier = under.merge(suppliers, on="control_number").assign(nature="supplier")
    classes = under[under["object_class"].notna() & (under["object_class"] != "outros")]
    by_class = classes.assign(nature="object_class", key=classes["object_class"])
    members = pd.concat([by_supplier, by_class], ignore_index=True)
    keys = [*UNIT, "nature", "key"]
    grouped = members.groupby(keys, dropna=False)["value"]
    members["total"] = grouped.transform("sum").round(2)
    members["count"] = grouped.transform("size")
    flagged = members[(members["count"] >= 2) & (members["total"] >= members["limit"])]
    records = flagged.groupby(keys, dropna=False)["control_number"].agg(list).rename("records")
    flagged = flagged.join(records, on=keys)
    best = flagged.sort_values(["total", "nature", "key"], ascending=[False, False, True]).drop_duplicates(
        "control_number"
    )
    return [
        {
            "rule": "split_purchase",
            "record": row.control_number,
            "message": f"Dispensa de {money(row.value)} é uma de {row.count} dispensas da mesma unidade em "
            f"{row.limit_year} que somam {money(row.total)}, acima do limite de {money(row.limit)}",
            "evidence": {"records": row.records, "sum": cents(row.total), "limit": cents(row.limit)},
        }
        for row in best.sort_values("control_number").itertuples(index=False)
    ]


def _window_members(dates: pd.Series, minimum: int, days: int) -> np.ndarray:
    """Rows of one (buyer, supplier) that belong to some window of `days` holding `minimum` awards."""
    values = dates.to_numpy(dtype="datetime64[D]")
    starts = np.searchsorted(values, values - np.timedelta64(days, "D"), side="left")
    ends = np.arange(len(values))
    cover = np.zeros(len(values) + 1, dtype=np.int64)
    qualifying = ends - starts + 1 >= minimum
    np.add.at(cover, starts[qualifying], 1)
    np.add.at(cover, ends[qualifying] + 1, -1)
    return np.cumsum(cover[:-1]) > 0


def pandas_repeat_supplier(contratos_enriched: pd.DataFrame) -> list[dict[str, Any]]:
    c = contratos_enriched[contratos_enriched["modalidade_id"].isin(DIRECT_AWARD_MODALIDADES)].copy()
    c["award_date"] = c["signed_at"].fillna(c["published_at"].dt.normalize())
    c = c.dropna(subset=["buyer_cnpj", "supplier_id", "award_date"])
    awards = (
        c.sort_values(["award_date", "control_number"])
        .groupby(["buyer_cnpj", "supplier_id", "purchase_control_number"], sort=False)
        .agg(award_date=("award_date", "first"), value=("value", "sum"))
        .reset_index()
    )
    awards = awards[awards.groupby(["buyer_cnpj", "supplier_id"])["award_date"].transform("size") >= 3]
    awards = awards.sort_values(["buyer_cnpj", "supplier_id", "award_date", "purchase_control_number"])
    member = awards.groupby(["buyer_cnpj", "supplier_id"], sort=False)["award_date"].transform(
        lambda dates: _window_members(dates, 3, 365)
    )
    flagged = awards[member.astype(bool)]
    return [
        {
            "rule": "repeat_supplier",
            "record": row.purchase_control_number,
            "message": f"Fornecedor {document(row.supplier_id)} recebeu contratações diretas repetidas do "
            f"mesmo órgão, a de {day(row.award_date)} somando {money(row.value)}",
        }
        for row in flagged.itertuples(index=False)
    ]


def to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """Column by column through numpy (strings become object columns, as pandas users usually have them)."""
    return pd.DataFrame({name: frame[name].to_numpy() for name in frame.columns})


def pandas_frames(data: Dataset) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    columns = [
        "control_number", "buyer_cnpj", "buyer_name", "unit_code", "year", "sequence", "modalidade_id",
        "amparo_code", "amparo_name", "value", "published_at", "object_class",
    ]  # fmt: skip
    contract_columns = [
        "control_number", "purchase_control_number", "buyer_cnpj", "year", "sequence", "value", "supplier_id",
    ]  # fmt: skip
    return (
        to_pandas(data.contratacoes.select(columns)),
        to_pandas(data.contratos.select(contract_columns)),
        to_pandas(
            data.contratos_enriched.select(*contract_columns, "modalidade_id", "signed_at", "published_at")
        ),
    )


# --- run --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-pandas", action="store_true")
    args = parser.parse_args()

    path = OUT / f"generated-{args.records}-seed{args.seed}.jsonl"
    if not path.exists():
        wall, _ = timed(lambda: write_jsonl(path, args.records, args.seed))
        print(f"generated {args.records:,} records in {wall:.1f} s -> {path.name}")
    size_mib = path.stat().st_size / 2**20
    print(f"input     {args.records:,} records, {size_mib:,.0f} MiB JSON Lines")

    print(f"load average (1/5/15 min) {load_average()}; times are wall s [CPU s of the process]")

    parse_wall, parse_cpu, lines = cpu_timed(lambda: orjson_parse(path))
    print(
        f"(a) orjson parse of every line     {parse_wall:7.2f} s [{parse_cpu:.2f}]  "
        f"({lines / parse_wall:,.0f} rec/s)"
    )

    load_wall, load_cpu, data = cpu_timed(lambda: dataset_from_ndjson(path))
    derived_wall, derived_cpu, _ = cpu_timed(lambda: (data.direct_awards, data.contratos_enriched))
    print(
        f"load into Dataset                  {load_wall:7.2f} s [{load_cpu:.2f}]  "
        f"({data.contratacoes.height:,} contratações, {data.contratos.height:,} contratos); "
        f"derived frames {derived_wall:.2f} s [{derived_cpu:.2f}]"
    )
    print(f"peak RSS after load                {peak_rss_mib():7.0f} MiB")

    rules_wall, rules_cpu, result = cpu_timed(lambda: run_rules(data))
    print(f"\n{'rule':<26}{'seconds':>9}{'findings':>10}{'skipped':>10}")
    for rule in sorted(result.elapsed, key=lambda r: -result.elapsed[r]):
        outcome = result.per_rule.get(rule)
        counts = f"{len(outcome.findings):>10,}{outcome.skipped:>10,}" if outcome else "     error"
        print(f"{rule:<26}{result.elapsed[rule]:>9.2f}{counts}")
    if result.errors:
        print(f"errors: {result.errors}")
    engine_wall, engine_cpu = rules_wall + derived_wall, rules_cpu + derived_cpu
    print(
        f"{'all rules (+ derived)':<26}{engine_wall:>9.2f}{len(result.findings):>10,}"
        f"   = {engine_wall / parse_wall:.2f}x the orjson parse (goal <= 2x); "
        f"CPU {engine_cpu:.2f} s = {engine_cpu / parse_cpu:.2f}x"
    )
    print(
        f"load + all rules                   {load_wall + engine_wall:7.2f} s"
        f"   = {(load_wall + engine_wall) / parse_wall:.2f}x the orjson parse; "
        f"CPU {load_cpu + engine_cpu:.2f} s = {(load_cpu + engine_cpu) / parse_cpu:.2f}x"
    )
    print(f"peak RSS (polars part)             {peak_rss_mib():7.0f} MiB (goal <= 2048)")

    if args.no_pandas:
        return
    contratacoes, contratos, enriched = pandas_frames(data)
    # Each rule alone on both sides, polars with the dataset's derived frames (dispensas with their limits)
    # dropped first, since the pandas version computes them too. The two sides alternate: one warm-up run of
    # each, then REPEATS timed runs of each; medians (and minima) are compared, since single runs on a shared
    # machine vary by tens of percent and the first run of each side pays for cold caches.
    print(f"\nload average {load_average()}; wall s [CPU s], median (min) of {REPEATS} runs after a warm-up")
    print(
        f"{'rule':<16}{'polars s median (min)':>31}{'pandas s median (min)':>31}{'wall ratio':>11}"
        f"{'CPU ratio':>10}{'findings pl/pd':>18}"
    )
    for rule, work in (
        ("over_limit", lambda: pandas_over_limit(contratacoes, contratos)),
        ("split_purchase", lambda: pandas_split_purchase(contratacoes, contratos)),
        ("repeat_supplier", lambda: pandas_repeat_supplier(enriched)),
    ):
        polars_runs, pandas_runs = [], []
        for attempt in range(1 + REPEATS):
            data.__dict__.pop("_derived", None)
            # Each side's flagged records are listed and its results freed outside the timed parts, before the
            # other side runs (a collection during one side never walks the other side's objects). The two
            # sides must flag the same records, not just as many.
            polars_wall, polars_cpu, alone = cpu_timed(lambda: run_rules(data, [rule]))  # noqa: B023
            polars_found, alone = sorted(finding.record for finding in alone.per_rule[rule].findings), None
            pandas_wall, pandas_cpu, found = cpu_timed(work)
            pandas_found, found = sorted(finding["record"] for finding in found), None
            if attempt:
                polars_runs.append((polars_wall, polars_cpu))
                pandas_runs.append((pandas_wall, pandas_cpu))
        (polars_wall, polars_cpu), (pandas_wall, pandas_cpu) = medians(polars_runs), medians(pandas_runs)
        check = "" if polars_found == pandas_found else "  DIFFERENT"
        print(
            f"{rule:<16}{spread(polars_runs):>31}{spread(pandas_runs):>31}"
            f"{pandas_wall / polars_wall:>10.1f}x{pandas_cpu / polars_cpu:>9.1f}x"
            f"{len(polars_found):>10,}/{len(pandas_found):,}{check}"
        )
    print(f"peak RSS (end, with pandas copies) {peak_rss_mib():7.0f} MiB")


if __name__ == "__main__":
    main()
