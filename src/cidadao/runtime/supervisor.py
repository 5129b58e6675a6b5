"""`cidadao up`: web, worker and beat as supervised child processes on one machine.

Each child's output is relayed line by line with its name as prefix. A child that exits is started again
after a backoff (1 s doubling to 30 s, reset once it has stayed up a minute). Ctrl-C or SIGTERM stops every
child (SIGTERM, then SIGKILL after a grace period) and returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from cidadao.config import Settings
from cidadao.monitor.jobs import Queue

CELERY_APP = "cidadao.worker.app:celery_app"
WORKER_QUEUES = ",".join(queue.value for queue in Queue)
BACKOFF_MAX_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0
GRACE_SECONDS = 20.0


def web_command(settings: Settings, workers: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", "cidadao.api.app:serve_app",
        "--host", "0.0.0.0", "--port", str(settings.port), "--workers", str(workers),
        "--no-access-log",  # the request middleware logs each request with its request id
    ]  # fmt: skip


def worker_command(concurrency: int = 4, pool: str = "prefork", hostname: str | None = None) -> list[str]:
    command = [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker", "-Q", WORKER_QUEUES,
        f"--pool={pool}", f"--concurrency={concurrency}", "--max-tasks-per-child=1000", "--loglevel=INFO",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return [*command, f"--hostname={hostname}"] if hostname else command


def beat_command() -> list[str]:
    # The scheduler (singleton, window-aligned) comes from the app's `beat_scheduler` setting.
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, "beat", "--loglevel=INFO"]


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    due_at: float = 0.0
    relay: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, children: Sequence[Child], out: IO[str] | None = None) -> None:
        self.children = list(children)
        self.out = out or sys.stdout
        self.width = max(len(child.name) for child in self.children)
        self._print_lock = threading.Lock()
        self._stopping = threading.Event()

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{name:<{self.width}} | {line}\n")
            self.out.flush()

    def _relay(self, child: Child, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(child.name, raw.decode("utf-8", errors="replace").rstrip())
        stream.close()

    def _start(self, child: Child) -> None:
        env = {**os.environ, **(child.env or {}), "PYTHONUNBUFFERED": "1"}
        child.process = subprocess.Popen(
            list(child.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        child.started_at = time.monotonic()
        assert child.process.stdout is not None
        child.relay = threading.Thread(target=self._relay, args=(child, child.process.stdout), daemon=True)
        child.relay.start()
        self.say("up", f"started {child.name} (pid {child.process.pid})")

    def stop(self) -> None:
        self._stopping.set()

    def run(self, until: Callable[[], bool] | None = None) -> int:
        """Supervise until Ctrl-C/SIGTERM, `stop()`, or `until()` returns True."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in previous:
                signal.signal(sig, lambda *_: self.stop())
        try:
            for child in self.children:
                self._start(child)
            while not self._stopping.wait(0.2):
                if until is not None and until():
                    break
                self._check()
        finally:
            self._shutdown()
            if in_main:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return 0

    def _check(self) -> None:
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is None:
                if now - child.started_at > STABLE_AFTER_SECONDS:
                    child.backoff = 1.0
                continue
            if process is not None:
                self.say(
                    "up", f"{child.name} exited with {process.returncode}; restart in {child.backoff:.0f}s"
                )
                child.process = None
                child.due_at = now + child.backoff
                child.backoff = min(BACKOFF_MAX_SECONDS, child.backoff * 2)
            elif now >= child.due_at:
                child.restarts += 1
                self._start(child)

    def _shutdown(self) -> None:
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            self.say("up", f"stopping {child.name}")
            # The main process only: it stops its own children (Celery's pool, uvicorn's workers). A pool
            # child killed directly can die holding the pool's queue lock, and Celery then waits on it.
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("up", f"{child.name} did not stop in {GRACE_SECONDS:.0f}s: killing it")
                _kill_group(child.process)
                child.process.wait()
        for child in self.children:
            if child.relay is not None:
                child.relay.join(timeout=2)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
