"""Every error is JSON `{error, message, details}`; bad input is a 4xx naming the parameter, never a 500."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from cidadao.logs import get_logger

log = get_logger(__name__)

_SLUGS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorDetail(BaseModel):
    param: str | None = None
    location: str | None = None
    message: str


class ErrorBody(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail]


class ApiError(Exception):
    """Raised by handlers; rendered as the JSON error body with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        location: str | None = None,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error or _SLUGS.get(status, "error")
        self.details = [ErrorDetail(param=param, location=location, message=message)] if param else []
        self.headers = headers


def bad_param(param: str, message: str, location: str = "query") -> ApiError:
    return ApiError(400, f"invalid parameter {param}: {message}", param=param, location=location)


def parse_day(text: str, param: str, location: str = "query") -> date:
    """Dates arrive as YYYY-MM-DD strings: pydantic's lax date parsing would take "0" for 1970-01-01."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422, f"invalid parameter {param}: not a calendar date", param=param, location=location
        ) from None


def error_response(
    status: int,
    error: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": error, "message": message, "details": details or []}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


# Shown in OpenAPI for every operation, so generated clients (and schemathesis) know the error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": slug.replace("_", " ")}
    for code, slug in _SLUGS.items()
    if code in (400, 401, 403, 404, 405, 413, 415, 422, 429, 503)
}


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        location = loc[0] if loc else None
        param = ".".join(loc[1:]) if len(loc) > 1 else (location or None)
        details.append({"param": param, "location": location, "message": str(item.get("msg", "invalid"))})
    return details


def _allowed_methods(request: Request) -> str:
    """Every method routed at this path (the router reports only the first matching route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(
            exc.status, exc.error, exc.message, [d.model_dump() for d in exc.details], exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        details = _validation_details(exc)
        names = ", ".join(sorted({d["param"] for d in details if d["param"]})) or "request"
        return error_response(422, "validation_error", f"invalid parameter: {names}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        slug = _SLUGS.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return error_response(exc.status_code, slug, str(exc.detail), headers=headers)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _database(request: Request, exc: Exception) -> Response:
        # Connectivity problems (server restarting, pool exhausted) are temporary: say so, do not 500.
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
            return await _unexpected(request, exc)
        log.warning("database_unavailable", path=request.url.path, error=type(exc).__name__)
        return error_response(
            503,
            "unavailable",
            "database temporarily unavailable; retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
        return error_response(500, "internal_error", "internal error; the request id identifies it in logs")
