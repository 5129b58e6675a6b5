"""The FastAPI application factory. `uvicorn --factory cidadao.api.app:serve_app` or `cidadao serve`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import ORJSONResponse
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from cidadao.api import entities, findings, health, investigations, pgfast, records, rules, runs, stats
from cidadao.api.errors import ERROR_RESPONSES, install_error_handlers
from cidadao.api.fastpath import FastRoutes
from cidadao.api.metrics import AppMetrics
from cidadao.api.middleware import RequestMiddleware
from cidadao.api.ratelimit import RedisLimiter, make_limiter
from cidadao.config import Settings, get_settings
from cidadao.logs import configure_logging
from cidadao.store.db import engine_for, make_engine

DESCRIPTION = """Findings of direct-award risk in Brazilian public procurement (PNCP), with evidence.

Reads are public unless API_READS_PUBLIC=false; writes need a JWT bearer token or an API key
(`Authorization: Bearer ...` or `X-API-Key`). Errors are JSON `{error, message, details}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine_for(settings.effective_database_url)
    read_engine = _read_engine(settings.effective_database_url, engine)
    limiter = make_limiter(settings.redis_url, settings.rate_limit_per_minute)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from cidadao.alerts.channels import configured_channels

        logging.getLogger(__name__).info("alert channels configured: %s", configured_channels(settings))
        yield
        if isinstance(limiter, RedisLimiter):
            await limiter.close()
        if read_engine is not engine:
            await pgfast.close_async(read_engine)
            read_engine.dispose()

    app = FastAPI(
        title="Cidadão.AI Sentinel",
        version="0.1.0",
        description=DESCRIPTION,
        default_response_class=ORJSONResponse,
        responses=ERROR_RESPONSES,
        lifespan=lifespan,
        # Off unless asked for: looking up OTel providers on every request costs more than /health itself.
        telemetry={
            "tracing": settings.api_opentelemetry,
            "metrics": settings.api_opentelemetry,
            "logs": settings.api_opentelemetry,
        },
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.read_engine = read_engine
    app.state.page_cache = findings.PageCache(settings.api_list_cache_seconds)
    app.state.metrics = AppMetrics(engine, settings.redis_url)
    install_error_handlers(app)

    # Routers carry their own /v1 prefix, so each route's path is its full template (metrics label).
    for module in (health, findings, records, entities, rules, runs, stats, investigations):
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(request.app.state.metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    _document_security(app, settings.api_reads_public)
    app.add_middleware(RequestMiddleware, limiter=limiter, fast=FastRoutes(app))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "X-Next-Cursor", "Retry-After"],
        )
    return app


def _read_engine(url: str, engine: Engine) -> Engine:
    """On PostgreSQL, reads get a pool of their own in autocommit and without pre-ping: one round trip per
    query instead of four (ping, BEGIN, query, ROLLBACK). A dropped connection fails one request with 503
    and the pool reconnects."""
    if make_url(url).get_backend_name() != "postgresql":
        return engine
    return make_engine(
        url,
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",  # set once per connection, not per checkout
        pool_reset_on_return=None,  # nothing to roll back in autocommit
        pool_size=20,
        max_overflow=20,
    )


_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "JWT (JWT_SECRET_KEY) or an API key"},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "`cidadao apikey create`",
    },
}


def _document_security(app: FastAPI, reads_public: bool) -> None:
    """Credentials are read by one light dependency (deps.py), so OpenAPI learns about them here: writes
    need one, reads too unless API_READS_PUBLIC (then an empty requirement says they are optional)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = _SECURITY_SCHEMES
            for path, operations in schema.get("paths", {}).items():
                if not path.startswith("/v1/"):
                    continue
                for method, operation in operations.items():
                    optional = method == "get" and reads_public
                    operation["security"] = [*([{}] if optional else []), {"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def serve_app() -> FastAPI:
    """Factory for uvicorn workers: configures logging from settings, then builds the app."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # The ~150k long-lived objects of the loaded app leave the collector's view: otherwise every full
    # collection walks them all (~20-40 ms) while requests wait, which showed as p99 latency. A request
    # allocates a few thousand containers and frees them by reference counting; collecting the youngest
    # generation every 20,000 allocations instead of 700 saved ~10 % of an uncached list's CPU.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    return app
