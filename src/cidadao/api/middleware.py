"""One pure ASGI layer for every request: request id, rate limit, latency metric and access log.

Pure ASGI (not BaseHTTPMiddleware) because this runs on the hot path of every request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cidadao.api.errors import error_response
from cidadao.api.fastpath import FastRoutes
from cidadao.api.metrics import request_latency
from cidadao.api.ratelimit import Limiter, bucket_for

access_log = structlog.get_logger("cidadao.access")
_access_std = logging.getLogger("cidadao.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNLIMITED_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})


class RequestMiddleware:
    def __init__(self, app: ASGIApp, limiter: Limiter, fast: FastRoutes | None = None) -> None:
        self.app = app
        self.limiter = limiter
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, credential = None, None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.match(candidate) else None
            elif name in (b"authorization", b"x-api-key"):
                credential = value.decode("latin-1")
        request_id = request_id or os.urandom(16).hex()  # as random as a uuid4, a fifth of its cost
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if scope["path"] not in UNLIMITED_PATHS:
                client = scope.get("client")
                verdict = await self.limiter.hit(bucket_for(client[0] if client else None, credential))
                if not verdict.allowed:
                    response = error_response(
                        429,
                        "rate_limited",
                        f"more than {self.limiter.limit} requests per minute; retry later",
                        headers={"Retry-After": str(verdict.retry_after)},
                    )
                    await response(scope, receive, send_with_id)
                    return
            matched = self.fast.match(scope) if self.fast else None
            if matched is not None:
                await self.fast.serve(matched, scope, receive, send_with_id)  # type: ignore[union-attr]
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            request_latency(scope["method"], template, status).observe(elapsed)
            if _access_std.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
