from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery.schedules import schedule as celery_schedule
from sqlalchemy import Engine

from cidadao.runtime.supervisor import Child, Supervisor
from cidadao.worker.app import celery_app
from cidadao.worker.beat import AlignedSchedule
from cidadao.worker.singleton import NamedLock


def test_a_named_lock_has_one_holder_at_a_time(engine: Engine) -> None:
    first, second = NamedLock(engine, "beat"), NamedLock(engine, "beat")
    assert first.acquire()
    assert not second.acquire()
    assert first.alive()
    assert NamedLock(engine, "other").acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_a_lock_dies_with_its_holder(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from cidadao.store.db import make_engine
        from cidadao.worker.singleton import NamedLock
        lock = NamedLock(make_engine({db_url!r}), "beat")
        assert lock.acquire()
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert holder.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        standby = NamedLock(engine, "beat")
        assert not standby.acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 10
        while not standby.acquire():  # the server notices the dead session within moments
            assert time.monotonic() < deadline
            time.sleep(0.05)
        standby.release()
    finally:
        holder.kill()
        holder.wait()


def test_aligned_schedule_fires_once_per_window() -> None:
    entry = AlignedSchedule(timedelta(seconds=300), app=celery_app)
    assert isinstance(entry, celery_schedule)
    now = entry.now()
    start = datetime.fromtimestamp(now.timestamp() // 300 * 300, UTC)
    due, _ = entry.is_due(start - timedelta(seconds=1))  # last sent in the previous window
    assert due
    due, wait = entry.is_due(start + timedelta(seconds=0.5))  # already sent in this window
    assert not due
    assert 0 < wait <= 300
    assert abs((now + timedelta(seconds=wait)) - (start + timedelta(seconds=300))) < timedelta(seconds=1)


def test_supervisor_prefixes_lines_restarts_a_crashed_child_and_stops_all() -> None:
    out = io.StringIO()
    crasher = Child("crash", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"])
    steady = Child("steady", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
    supervisor = Supervisor([crasher, steady], out=out)
    started = time.monotonic()

    supervisor.run(until=lambda: crasher.restarts >= 2 or time.monotonic() - started > 20)

    assert crasher.restarts >= 2
    assert steady.process is not None
    assert steady.process.poll() is not None
    lines = out.getvalue().splitlines()
    assert lines.count("crash  | boom") >= 3
    assert "steady | up" in lines
    assert any(line.startswith("up     | crash exited with 3; restart in") for line in lines)
