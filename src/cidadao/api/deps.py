"""Dependencies shared by routers: settings, database and the calling principal with its scopes.

All are `async def` although most do no I/O: FastAPI runs sync dependencies in the thread pool, a hop per
request. Credentials are read from the headers by one dependency (the security schemes are documented in
OpenAPI by `app.py`), which keeps the per-request dependency graph small on the hot read paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from cidadao.api.auth import ANONYMOUS, KEY_PREFIX, AuthError, Principal, verify_api_key, verify_token
from cidadao.api.errors import ApiError
from cidadao.config import Settings


async def get_engine(request: Request) -> Engine:
    """The engine for writes: transactions, pessimistic connection checks."""
    engine: Engine = request.app.state.engine
    return engine


async def get_read_engine(request: Request) -> Engine:
    """The engine for reads: autocommit on PostgreSQL (no BEGIN/ROLLBACK round trips), no pre-ping."""
    engine: Engine = request.app.state.read_engine
    return engine


def get_connection(request: Request) -> Iterator[Connection]:
    engine: Engine = request.app.state.read_engine
    with engine.connect() as connection:
        yield connection


def _credential(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def get_principal(request: Request) -> Principal:
    """Anonymous without credentials; a 401 for credentials that do not verify."""
    credential = _credential(request)
    if not credential:
        return ANONYMOUS
    settings: Settings = request.app.state.settings
    try:
        if credential.startswith(KEY_PREFIX):
            return await run_in_threadpool(verify_api_key, request.app.state.engine, settings, credential)
        return verify_token(settings, credential)
    except AuthError as error:
        raise ApiError(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through principals holding `scope` (reads may be public by setting)."""

    async def check(request: Request) -> Principal:
        principal = await get_principal(request)
        if scope == "read" and request.app.state.settings.api_reads_public:
            return principal
        if principal is ANONYMOUS:
            raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(scope):
            raise ApiError(403, f"scope {scope!r} required")
        return principal

    return check


EngineDep = Annotated[Engine, Depends(get_engine)]
ReadEngineDep = Annotated[Engine, Depends(get_read_engine)]
# A Core connection, not an ORM session: handlers select columns and skip the ORM's per-row cost.
SessionDep = Annotated[Connection, Depends(get_connection)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
