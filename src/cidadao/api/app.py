"""The FastAPI application factory. `uvicorn --factory cidadao.api.app:create_app` or `cidadao serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import ORJSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cidadao.api import entities, findings, health, investigations, records, rules, runs, stats
from cidadao.api.errors import ERROR_RESPONSES, install_error_handlers
from cidadao.api.metrics import AppMetrics
from cidadao.api.middleware import RequestMiddleware
from cidadao.api.ratelimit import RedisLimiter, make_limiter
from cidadao.config import Settings, get_settings
from cidadao.logs import configure_logging
from cidadao.store.db import engine_for

DESCRIPTION = """Findings of direct-award risk in Brazilian public procurement (PNCP), with evidence.

Reads are public unless API_READS_PUBLIC=false; writes need a JWT bearer token or an API key
(`Authorization: Bearer ...` or `X-API-Key`). Errors are JSON `{error, message, details}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine_for(settings.effective_database_url)
    limiter = make_limiter(settings.redis_url, settings.rate_limit_per_minute)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(limiter, RedisLimiter):
            await limiter.close()

    app = FastAPI(
        title="Cidadão.AI Sentinel",
        version="0.1.0",
        description=DESCRIPTION,
        default_response_class=ORJSONResponse,
        responses=ERROR_RESPONSES,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = AppMetrics(engine, settings.redis_url)
    install_error_handlers(app)

    # Routers carry their own /v1 prefix, so each route's path is its full template (metrics label).
    for module in (health, findings, records, entities, rules, runs, stats, investigations):
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(request.app.state.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    if settings.api_reads_public:
        _document_public_reads(app)
    app.add_middleware(RequestMiddleware, limiter=limiter)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Next-Cursor", "Retry-After"],
        )
    return app


def _document_public_reads(app: FastAPI) -> None:
    """Reads accept credentials but do not need them: say so in OpenAPI (an empty security requirement)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                operation = path.get("get")
                if operation and operation.get("security") and {} not in operation["security"]:
                    operation["security"].append({})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_app() -> FastAPI:
    """Factory for uvicorn workers: configures logging from settings, then builds the app."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
