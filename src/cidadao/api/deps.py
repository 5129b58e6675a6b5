"""Dependencies shared by routers: settings, database and the calling principal with its scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cidadao.api.auth import ANONYMOUS, KEY_PREFIX, AuthError, Principal, verify_api_key, verify_token
from cidadao.api.errors import ApiError
from cidadao.config import Settings
from cidadao.store.db import session_factory

_bearer = HTTPBearer(auto_error=False, description="JWT signed with JWT_SECRET_KEY, or an API key")
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key from `cidadao apikey create`"
)


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    with session_factory(get_engine(request))() as session:
        yield session


def get_connection(request: Request) -> Iterator[Connection]:
    with get_engine(request).connect() as connection:
        yield connection


async def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Anonymous without credentials; a 401 for credentials that do not verify."""
    settings = get_settings_dep(request)
    credential = api_key or (bearer.credentials if bearer else None)
    if not credential:
        return ANONYMOUS
    try:
        if credential.startswith(KEY_PREFIX):
            return await run_in_threadpool(verify_api_key, get_engine(request), settings, credential)
        return verify_token(settings, credential)
    except AuthError as error:
        raise ApiError(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from None


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through principals holding `scope` (reads may be public by setting)."""

    async def check(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if scope == "read" and get_settings_dep(request).api_reads_public:
            return principal
        if principal is ANONYMOUS:
            raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(scope):
            raise ApiError(403, f"scope {scope!r} required")
        return principal

    return check


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
ConnectionDep = Annotated[Connection, Depends(get_connection)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
