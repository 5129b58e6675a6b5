"""Process-lifetime named locks that the operating system or the database frees when the holder dies.

PostgreSQL: a session advisory lock on a dedicated connection (a kill -9 closes the socket, the server drops
the lock). SQLite: `flock` on a file next to the database (the kernel drops it with the process). So a hot
standby takes over at once, with no lease to expire.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text


def _advisory_key(engine: Engine, name: str) -> int:
    # Advisory locks are per database; the search path keeps schemas (one per test or tenant) apart.
    url = engine.url
    scope = f"{url.database}|{url.query.get('options', '')}|{name}"
    return int.from_bytes(hashlib.sha256(scope.encode()).digest()[:8], "big", signed=True)


class NamedLock:
    """A non-blocking named lock; `acquire()` says whether this process now holds it."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None or self._file is not None

    def acquire(self) -> bool:
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            connection = self.engine.connect()
            try:
                key = _advisory_key(self.engine, self.name)
                got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
                connection.commit()
            except Exception:
                connection.close()
                raise
            if got:
                self._connection = connection
            else:
                connection.close()
            return got
        handle = self._lock_path().open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def alive(self) -> bool:
        """Still held? False once the lock connection is gone (e.g. PostgreSQL restarted)."""
        if self._file is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
        except Exception:
            self._drop_connection()
            return False
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            try:
                key = _advisory_key(self.engine, self.name)
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                self._connection.commit()
            except Exception:  # the server already dropped it with the session
                pass
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # closing a dead connection may raise again; it is gone either way
                pass
            self._connection = None

    def _lock_path(self) -> Path:
        database = self.engine.url.database
        if not database or database == ":memory:":
            # An in-memory database lives in one process only.
            return Path(tempfile.gettempdir()) / f"cidadao-{os.getpid()}.{self.name}.lock"
        return Path(f"{database}.{self.name}.lock")


@contextmanager
def try_lock(engine: Engine, name: str) -> Iterator[bool]:
    """`with try_lock(engine, "monitor") as held:` runs the body either way; `held` says who owns it."""
    lock = NamedLock(engine, name)
    held = lock.acquire()
    try:
        yield held
    finally:
        if held:
            lock.release()
