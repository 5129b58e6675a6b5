"""Fast JSON: handlers build plain dicts from Core rows and hand them to orjson, skipping model validation.

Response models are still declared on routes, so OpenAPI documents (and tests check) the exact shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, default=_default),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def utc(value: datetime | None) -> datetime | None:
    """Timestamp columns are UTC; SQLite hands them back naive."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def money(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)
