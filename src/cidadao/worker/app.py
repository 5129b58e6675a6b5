"""The Celery application: broker, queues, reliability settings and the beat schedule.

Broker: REDIS_URL, or with no Redis the embedded kombu SQLAlchemy transport on a SQLite file (nothing beyond
pip). Results are not stored: every task records its outcome in the database (job_runs, investigations).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_ready
from kombu import Connection, Exchange, Queue

from cidadao.config import Settings, get_settings
from cidadao.logs import configure_logging
from cidadao.monitor.jobs import INVESTIGATE_TASK, JOBS, PRIORITY
from cidadao.monitor.jobs import Queue as JobQueue

TASK_MODULES = ["cidadao.worker.tasks"]


def broker_url(settings: Settings) -> str:
    return settings.redis_url or settings.embedded_broker_url


def task_routes() -> dict[str, dict[str, Any]]:
    routes = {job.task: {"queue": job.queue.value, "priority": PRIORITY[job.queue]} for job in JOBS.values()}
    routes[INVESTIGATE_TASK] = {"queue": JobQueue.CRITICAL.value, "priority": PRIORITY[JobQueue.CRITICAL]}
    return routes


def broker_queues() -> list[Queue]:
    exchange = Exchange("cidadao", type="direct")
    return [
        Queue(queue.value, exchange, routing_key=queue.value, queue_arguments={"x-max-priority": 10})
        for queue in JobQueue
    ]


# Options go to create_engine: web, worker and beat share the file, so wait for its lock.
SQLITE_TRANSPORT = {"connect_args": {"timeout": 30}}


def declare_embedded_queues(url: str) -> None:
    """Create the embedded broker's tables and queues before the processes sharing it start.

    Kombu's SQLAlchemy transport creates a queue's row on first use under a lock held within one process only;
    web, worker and beat declaring one queue at once leave the loser's session failed for good.
    """
    with Connection(url, transport_options=SQLITE_TRANSPORT) as connection:
        channel = connection.default_channel
        for queue in broker_queues():
            queue(channel).declare()


def celery_config(settings: Settings) -> dict[str, Any]:
    url = broker_url(settings)
    transport: dict[str, Any] = {}
    if url.startswith("sqla+sqlite"):
        transport = SQLITE_TRANSPORT
    if url.startswith(("redis://", "rediss://")):
        # Unacked messages come back after the visibility timeout; the queues are polled in the order given
        # (critical first) and message priorities are honoured within a queue.
        transport = {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(11)),
            "sep": ":",
            "socket_keepalive": True,
            "health_check_interval": 10,
            "socket_timeout": 30,
        }
    return {
        "broker_url": url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,  # keep reconnecting after broker loss, never give up
        "broker_channel_error_retry": True,
        "broker_heartbeat": 10,
        "task_queues": broker_queues(),
        "task_default_queue": JobQueue.DEFAULT.value,
        "task_default_exchange": "cidadao",
        "task_default_routing_key": JobQueue.DEFAULT.value,
        "task_default_priority": PRIORITY[JobQueue.DEFAULT],
        "task_routes": task_routes(),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,  # redelivered; job_runs.attempts bounds how often
        "task_acks_on_failure_or_timeout": True,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 1000,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_direct": True,  # a queue per worker, used by its own liveness probe
        "worker_send_task_events": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_max_loop_interval": 5,
        "beat_scheduler": "cidadao.worker.beat:SingletonScheduler",
    }


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("cidadao", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    return app


def _logging(**_: Any) -> None:
    # Plain stdlib logging under structlog's formatter; Celery keeps its hands off the root logger.
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def _fresh_pools(**_: Any) -> None:
    # Pool children must not share the parent's database sockets.
    from cidadao.store.db import engine_for

    engine_for(get_settings().effective_database_url).dispose(close=False)


def _start_probe(sender: Any = None, **_: Any) -> None:
    from cidadao.alerts.channels import configured_channels
    from cidadao.worker.heartbeat import start_watchdog

    # Loud configuration: how many channels of each kind (never their URLs) this worker will deliver to.
    logging.getLogger(__name__).info("alert channels configured: %s", configured_channels(get_settings()))
    start_watchdog(sender)


# weak=False: the receivers are module functions, kept alive anyway.
setup_logging.connect(_logging, weak=False)
worker_process_init.connect(_fresh_pools, weak=False)
worker_ready.connect(_start_probe, weak=False)

celery_app = create_celery()
