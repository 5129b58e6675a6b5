"""Fault test 5: scheduled tasks reach consumed queues, none is async, all run under stdlib logging."""

from __future__ import annotations

import inspect
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import create_engine, select, text

from cidadao.config import get_settings, load_settings
from cidadao.monitor.jobs import JOBS
from cidadao.monitor.jobs import Queue as JobQueue
from cidadao.runtime.supervisor import WORKER_QUEUES, worker_command
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.models import InvestigationRow, JobRunRow
from cidadao.worker import tasks
from cidadao.worker.app import celery_app, celery_config, declare_embedded_queues, task_routes
from cidadao.worker.beat import beat_schedule

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile_worker_queues() -> set[str]:
    line = next(line for line in PROCFILE.read_text().splitlines() if line.startswith("worker:"))
    words = shlex.split(line.partition(":")[2])
    return set(words[words.index("-Q") + 1].split(","))


def test_every_scheduled_task_is_routed_to_a_queue_the_worker_consumes() -> None:
    consumed = set(WORKER_QUEUES.split(","))
    assert consumed == procfile_worker_queues() == {"critical", "high", "default"}
    assert WORKER_QUEUES in worker_command()
    schedule = beat_schedule(load_settings())
    assert set(schedule) == set(JOBS)
    routes = task_routes()
    for name, entry in schedule.items():
        assert entry["task"] in celery_app.tasks, name
        assert entry["options"]["queue"] in consumed, name
        assert routes[entry["task"]]["queue"] == entry["options"]["queue"]
    assert routes["cidadao.investigate"]["queue"] == "critical"
    priorities = {entry["options"]["queue"]: entry["options"]["priority"] for entry in schedule.values()}
    assert priorities == {"critical": 10, "high": 7, "default": 5}


def test_no_task_body_is_async() -> None:
    ours = {name: task for name, task in celery_app.tasks.items() if name.startswith("cidadao.")}
    assert len(ours) == len(JOBS) + 2  # + probe + investigate
    for name, task in ours.items():
        assert not inspect.iscoroutinefunction(task.run), name
        assert not inspect.iscoroutinefunction(getattr(task.run, "__wrapped__", task.run)), name


def test_reliability_settings() -> None:
    config = celery_config(load_settings(redis_url="redis://127.0.0.1:6379/0"))
    assert config["task_acks_late"]
    assert config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_max_tasks_per_child"] == 1000
    assert config["task_serializer"] == "json"
    assert config["accept_content"] == ["json"]
    assert config["task_soft_time_limit"] < config["task_time_limit"]
    assert config["broker_transport_options"]["visibility_timeout"] > config["task_time_limit"]
    assert config["broker_connection_retry_on_startup"]
    assert config["broker_connection_max_retries"] is None
    embedded = celery_config(load_settings())
    assert embedded["broker_url"].startswith("sqla+sqlite:///")


@pytest.fixture
def plain_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """Root logger with a bare stdlib handler; a logging call that cannot be formatted fails the test."""
    records: list[logging.LogRecord] = []

    class Strict(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logging.Formatter().format(record)
            records.append(record)

        def handleError(self, record: logging.LogRecord) -> None:
            raise AssertionError(f"logging call failed: {record.msg!r} {record.args!r}")

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [Strict()])
    monkeypatch.setattr(root, "level", logging.INFO)
    return records


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    with ReplayServer() as replay:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("PNCP_BASE_URL", replay.url)
        monkeypatch.setenv("ALERT_FILE", str(tmp_path / "alerts.jsonl"))
        get_settings.cache_clear()
        yield url
    engine_for(url).dispose()


def test_every_task_runs_under_plain_stdlib_logging(
    plain_logging: list[logging.LogRecord], worker_env: str
) -> None:
    results: dict[str, Any] = {}
    for job in JOBS.values():
        outcome = celery_app.tasks[job.task].apply()
        assert outcome.successful(), (job.name, outcome.traceback)
        results[job.name] = outcome.result
    assert {result["outcome"] for result in results.values()} == {"succeeded"}
    with transaction(engine_for(worker_env)) as session:
        investigation = InvestigationRow(
            target_kind="buyer", target={"cnpj": "06140404000167"}, requested_by="test"
        )
        session.add(investigation)
        session.flush()
        investigation_id = investigation.id
    outcome = tasks.run_investigation.apply(args=[investigation_id])
    assert outcome.successful(), outcome.traceback
    with transaction(engine_for(worker_env)) as session:
        row = session.get(InvestigationRow, investigation_id)
        assert row is not None
        assert (row.status, row.result["records"]) == ("succeeded", 0)
        assert session.scalar(
            select(JobRunRow.status).where(JobRunRow.job == f"investigate-{investigation_id}")
        )
    assert any(record.name.startswith("cidadao.worker") for record in plain_logging)


def test_embedded_broker_queues_exist_before_any_process_uses_them(tmp_path: Path) -> None:
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    declare_embedded_queues(url)
    declare_embedded_queues(url)  # a restart of `cidadao up` finds them and adds nothing
    engine = create_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}")
    with engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM kombu_queue")).scalars().all()
    engine.dispose()
    assert sorted(names) == sorted(queue.value for queue in JobQueue)

    with Connection(url) as connection:
        connection.SimpleQueue("critical").put({"probe": 1})
        message = connection.SimpleQueue("critical").get(timeout=5)
        message.ack()
    assert message.payload == {"probe": 1}
