"""The hottest GET routes served without FastAPI's router and dependency resolution.

`/health`, `/health/live`, `/v1/findings` and `/v1/findings/{id}` are called directly by the request
middleware: the same handler functions, the same credential check (`deps.require("read")`) and the same
exception handlers as through FastAPI, so answers are byte-for-byte those of the routed path. Matching and
solving the dependency graph cost more CPU than the whole `/health` answer; here a dict lookup replaces them.

Anything unusual (another method, a trailing slash, an id that is not a plain in-range integer) falls through
to FastAPI, which renders its own 404/405/422 as before. `scope["route"]` is set to the route FastAPI would
have matched, so metrics and the access log label requests identically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from cidadao.api import findings, health
from cidadao.api.deps import require

Handler = Callable[[Request], Awaitable[Any]]

_DETAIL_PREFIX = "/v1/findings/"
_MAX_ID_DIGITS = len(str(findings.MAX_ID))


class FastRoutes:
    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._reader = require("read")
        routes = {
            route.path: route
            for route in (*health.router.routes, *findings.router.routes)
            if isinstance(route, APIRoute) and "GET" in (route.methods or ())
        }
        self._exact: dict[str, tuple[APIRoute, Handler]] = {
            "/health": (routes["/health"], self._health),
            "/health/live": (routes["/health/live"], self._health),
            "/v1/findings": (routes["/v1/findings"], self._list),
        }
        self._detail = routes["/v1/findings/{id}"]

    def match(self, scope: Scope) -> tuple[APIRoute, Handler, int] | None:
        """The route and handler for this request, or None to let FastAPI route it."""
        if scope["method"] != "GET" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        exact = self._exact.get(path)
        if exact is not None:
            return exact[0], exact[1], 0
        if path.startswith(_DETAIL_PREFIX):
            tail = path[len(_DETAIL_PREFIX) :]
            # Only canonical ids: "007", "+1" or out-of-range values get FastAPI's own validation errors.
            if 0 < len(tail) <= _MAX_ID_DIGITS and tail.isascii() and tail.isdigit() and tail[0] != "0":
                finding_id = int(tail)
                if finding_id <= findings.MAX_ID:
                    return self._detail, self._detail_handler, finding_id
        return None

    async def serve(
        self, matched: tuple[APIRoute, Handler, int], scope: Scope, receive: Receive, send: Send
    ) -> None:
        route, handler, finding_id = matched
        scope["route"] = route
        scope["path_params"] = {"id": finding_id} if finding_id else {}
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as error:
            rendered = self._render(request, error)
            if rendered is None:
                raise
            response = await rendered
        await response(scope, receive, send)

    def _render(self, request: Request, error: Exception) -> Awaitable[Any] | None:
        """The app's own exception handler for `error` (as ExceptionMiddleware would pick it)."""
        handlers = self._app.exception_handlers
        for cls in type(error).__mro__:
            if cls is Exception:
                break  # unexpected errors take the usual way, through ServerErrorMiddleware
            handler = handlers.get(cls)
            if handler is not None:
                result: Awaitable[Any] = handler(request, error)  # type: ignore[assignment]
                return result  # every handler of this app is async
        return None

    async def _health(self, _request: Request) -> Any:
        return await health.health()

    async def _list(self, request: Request) -> Any:
        principal = await self._reader(request)
        return await findings.list_findings(request, request.app.state.read_engine, principal)

    async def _detail_handler(self, request: Request) -> Any:
        principal = await self._reader(request)
        finding_id: int = request.scope["path_params"]["id"]
        return await findings.get_finding(finding_id, request.app.state.read_engine, principal)
