"""Hot read queries on PostgreSQL straight through psycopg's async connections, one small pool per event
loop (sized like the read engine's pool, same URL, autocommit).

SQLAlchemy's `Connection.execute` costs more CPU than the query it sends for a 50-row page (cache key,
parameter processing, result metadata with one psycopg `Column` per column per request). Here the SQL text is
fixed per statement shape (built or compiled once), psycopg prepares it server-side after a few executions on
each pooled connection, and rows come back as plain tuples. SQLite keeps the SQLAlchemy path; tests on
PostgreSQL compare both paths' answers.

Driver errors are re-raised as SQLAlchemy's, so the API's handlers answer 503 exactly as before, and a
connection that broke is closed instead of going back to the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


def enabled(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


class AsyncPool:
    """psycopg async connections for one event loop (one per uvicorn worker), autocommit, at most `size`.

    Used by async handlers so a query costs no thread-pool hop (measured ~0.3 ms of CPU per request, a third
    of an uncached page). A connection that fails is closed and replaced on next use."""

    def __init__(self, engine: Engine, size: int) -> None:
        _args, self._kwargs = engine.dialect.create_connect_args(engine.url)
        self._free: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            connection = self._free.pop() if self._free else None
            if connection is None or connection.closed:
                connection = await psycopg.AsyncConnection.connect(**self._kwargs, autocommit=True)
            try:
                yield connection
            except BaseException:
                if connection.broken or connection.closed:
                    await connection.close()
                else:
                    self._free.append(connection)
                raise
            self._free.append(connection)

    def discard(self) -> None:
        free, self._free = self._free, []
        for connection in free:
            connection.pgconn.finish()

    async def close(self) -> None:
        free, self._free = self._free, []
        for connection in free:
            await connection.close()


_async_pools: dict[tuple[int, asyncio.AbstractEventLoop], AsyncPool] = {}


def _async_pool(engine: Engine) -> AsyncPool:
    key = (id(engine), asyncio.get_running_loop())
    pool = _async_pools.get(key)
    if pool is None:
        for stale_key, stale in list(_async_pools.items()):
            if stale_key[1].is_closed():  # a finished loop (a test client's): close its sockets
                del _async_pools[stale_key]
                stale.discard()
        size = engine.pool.size() + engine.pool._max_overflow  # type: ignore[attr-defined]
        pool = _async_pools[key] = AsyncPool(engine, max(size, 1))
    return pool


async def close_async(engine: Engine) -> None:
    """Close this loop's async connections for `engine` (app shutdown)."""
    pool = _async_pools.pop((id(engine), asyncio.get_running_loop()), None)
    if pool is not None:
        await pool.close()


@asynccontextmanager
async def acursor(engine: Engine) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
    try:
        async with _async_pool(engine).connection() as connection, connection.cursor() as cur:
            yield cur
    except psycopg.Error as error:
        raise DBAPIError.instance(None, None, error, psycopg.Error) from error


async def afetch(engine: Engine, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async with acursor(engine) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall()


async def afetch_pipelined(
    engine: Engine, statements: list[tuple[str, dict[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement, all sent in one pipeline: one round trip instead of one each."""
    async with acursor(engine) as first:
        connection = first.connection
        cursors = [first, *(connection.cursor() for _ in statements[1:])]
        try:
            async with connection.pipeline():
                for cur, (sql, params) in zip(cursors, statements, strict=True):
                    await cur.execute(sql, params)
            return [await cur.fetchall() for cur in cursors]
        finally:
            for cur in cursors[1:]:
                await cur.close()


@lru_cache(maxsize=1024)
def compiled(statement: ClauseElement, engine: Engine) -> tuple[str, dict[str, Any]]:
    """SQL text of a statement (`%(name)s` placeholders for psycopg) and its literal parameters' values.

    Expanding `IN` parameters stay as `__[POSTCOMPILE_name]` markers: see `expand`."""
    result = statement.compile(dialect=engine.dialect)
    return str(result), dict(result.params)


@lru_cache(maxsize=1024)
def expand(sql: str, counts: tuple[tuple[str, int], ...]) -> str:
    """Render each expanding parameter `name` holding `n` values as `%(name_0)s, ..., %(name_{n-1})s`."""
    for name, n in counts:
        sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join(f"%({name}_{i})s" for i in range(n)))
    return sql
