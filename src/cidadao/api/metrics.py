"""Prometheus metrics: request latency by route template, plus figures read from the database at scrape time
(findings by rule and severity, runs by outcome, outbox depth and dead letters). Cache metrics live in
`cidadao.cache`. With PROMETHEUS_MULTIPROC_DIR set, process metrics are aggregated across uvicorn workers;
`cidadao serve --workers N` sets it up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from cidadao.cache import shared_stats
from cidadao.logs import get_logger
from cidadao.store.models import AlertOutboxRow, FindingRow, IngestionRunRow, JobRunRow

log = get_logger(__name__)

REQUEST_LATENCY = Histogram(
    "cidadao_http_request_duration_seconds",
    "API request latency by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
_LATENCY_CHILDREN: dict[tuple[str, str, int], Histogram] = {}


def request_latency(method: str, route: str, status: int) -> Histogram:
    """The latency histogram of one label set, looked up once: `labels()` costs more than `observe()`.

    Route labels are templates (or "<unmatched>"), so the number of children stays bounded."""
    key = (method, route, status)
    child = _LATENCY_CHILDREN.get(key)
    if child is None:
        child = _LATENCY_CHILDREN[key] = REQUEST_LATENCY.labels(method, route, str(status))
    return child


class DatabaseCollector(Collector):
    """Counts read with GROUP BYs, cached for `max_age` seconds so frequent scrapes stay cheap."""

    def __init__(self, engine: Engine, max_age: float = 15.0) -> None:
        self._engine = engine
        self._max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self._max_age:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("cidadao_metrics_database_up", "Whether the scrape could read the database")
        try:
            metrics = self._query()
        except Exception as error:
            log.warning("metrics_database_unavailable", error=str(error))
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _query(self) -> list[Metric]:
        findings = GaugeMetricFamily("cidadao_findings", "Findings stored", labels=["rule", "severity"])
        runs = GaugeMetricFamily(
            "cidadao_runs", "Runs by kind and outcome", labels=["kind", "name", "status"]
        )
        outbox = GaugeMetricFamily("cidadao_outbox", "Alert outbox rows by status", labels=["status"])
        dead = GaugeMetricFamily("cidadao_outbox_dead_letters", "Alerts given up after all attempts")
        n = func.count()
        with self._engine.connect() as c:
            for rule, severity, count in c.execute(
                select(FindingRow.rule, FindingRow.severity, n).group_by(FindingRow.rule, FindingRow.severity)
            ):
                findings.add_metric([rule, severity], count)
            ingestion = select(IngestionRunRow.source, IngestionRunRow.status, n)
            for source, status, count in c.execute(
                ingestion.group_by(IngestionRunRow.source, IngestionRunRow.status)
            ):
                runs.add_metric(["ingestion", source, status], count)
            for job, status, count in c.execute(
                select(JobRunRow.job, JobRunRow.status, n).group_by(JobRunRow.job, JobRunRow.status)
            ):
                runs.add_metric(["job", job, status], count)
            statuses = dict(
                c.execute(select(AlertOutboxRow.status, n).group_by(AlertOutboxRow.status)).tuples().all()
            )
        for status in ("pending", "held", "delivered", "dead", *statuses):
            outbox.add_metric([status], statuses.get(status, 0))
        dead.add_metric([], statuses.get("dead", 0))
        return [findings, runs, outbox, dead]


class SharedCacheCollector(Collector):
    """Source-cache lookups of every process (workers included), tallied in Redis."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url

    def collect(self) -> Iterator[Metric]:
        try:
            tally = shared_stats(self._url)
        except Exception as error:
            log.warning("metrics_cache_stats_unavailable", error=str(error))
            return
        requests = GaugeMetricFamily(
            "cidadao_cache_shared_requests", "Source cache lookups, all processes", labels=["name", "result"]
        )
        for (name, result), count in sorted(tally.items()):
            requests.add_metric([name, result], count)
        hits = sum(n for (_, result), n in tally.items() if result == "hit")
        misses = sum(n for (_, result), n in tally.items() if result == "miss")
        ratio = GaugeMetricFamily(
            "cidadao_cache_shared_hit_ratio", "Source cache hits / lookups, all processes"
        )
        ratio.add_metric([], hits / (hits + misses) if hits + misses else 0.0)
        yield requests
        yield ratio


class AppMetrics:
    """What `/metrics` renders for one app: process metrics plus figures read at scrape time."""

    def __init__(self, engine: Engine, redis_url: str | None = None) -> None:
        self.database = CollectorRegistry(auto_describe=False)
        self.database.register(DatabaseCollector(engine))
        if redis_url:
            self.database.register(SharedCacheCollector(redis_url))

    def render(self) -> bytes:
        process: Collector = REGISTRY
        if os.environ.get(MULTIPROC_DIR):
            process = CollectorRegistry()
            MultiProcessCollector(process)  # type: ignore[no-untyped-call]
        families = list(process.collect())
        return generate_latest(Families([*families, cache_hit_ratio(families)])) + generate_latest(
            self.database
        )


class Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def cache_hit_ratio(families: list[Metric]) -> Metric:
    """Hits / (hits + misses) of the source cache, from the lookup counters (summed over workers)."""
    tally = {"hit": 0.0, "miss": 0.0}
    for family in families:
        if family.name == "cidadao_cache_requests":
            for sample in family.samples:
                result = sample.labels.get("result", "")
                if sample.name.endswith("_total") and result in tally:
                    tally[result] += sample.value
    ratio = GaugeMetricFamily("cidadao_cache_hit_ratio", "Source cache hits / lookups since start")
    lookups = tally["hit"] + tally["miss"]
    ratio.add_metric([], tally["hit"] / lookups if lookups else 0.0)
    return ratio


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_shared_by_workers(workers: int) -> Iterator[None]:
    """Around a uvicorn run: with several workers, each writes its metrics to files in one directory that
    `/metrics` sums (prometheus_client's multiprocess mode); otherwise each scrape would show the counters of
    whichever worker answered. Workers inherit the variable, so it is set before they start."""
    configured = os.environ.get(MULTIPROC_DIR)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a previous run's counters would be summed in
            stale.unlink()
        yield
        return
    if workers < 2:
        yield
        return
    created = tempfile.mkdtemp(prefix="cidadao-metrics-")
    os.environ[MULTIPROC_DIR] = created
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(created, ignore_errors=True)
