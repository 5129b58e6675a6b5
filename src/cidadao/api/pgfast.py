"""Hot read queries on PostgreSQL straight through psycopg, on connections of the read engine's pool.

SQLAlchemy's `Connection.execute` costs more CPU than the query it sends for a 50-row page (cache key,
parameter processing, result metadata with one psycopg `Column` per column per request). Here the SQL text is
fixed per statement shape (built or compiled once), psycopg prepares it server-side after a few executions on
each pooled connection, and rows come back as plain tuples. SQLite keeps the SQLAlchemy path; tests on
PostgreSQL compare both paths' answers.

Driver errors are re-raised as SQLAlchemy's, so the API's handlers answer 503 exactly as before, and a
connection that failed is invalidated in the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


def enabled(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"


@contextmanager
def cursor(engine: Engine) -> Iterator[psycopg.Cursor[Any]]:
    raw = engine.raw_connection()
    try:
        connection: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        with connection.cursor() as cur:
            yield cur
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            raw.invalidate(error)
        raise DBAPIError.instance(None, None, error, psycopg.Error) from error
    finally:
        raw.close()  # back to the pool (autocommit: nothing to reset)


def fetch(engine: Engine, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with cursor(engine) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


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
