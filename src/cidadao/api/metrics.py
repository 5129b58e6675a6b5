"""Prometheus metrics: request latency by route template, plus figures read from the database at scrape time
(findings by rule and severity, runs by outcome, outbox depth and dead letters). Cache metrics live in
`cidadao.cache`. With PROMETHEUS_MULTIPROC_DIR set, process metrics are aggregated across uvicorn workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

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
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            process = CollectorRegistry()
            MultiProcessCollector(process)  # type: ignore[no-untyped-call]
            return generate_latest(process) + generate_latest(self.database)
        return generate_latest(REGISTRY) + generate_latest(self.database)
