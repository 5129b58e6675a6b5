"""Query strings validated by one pydantic model in one call, documented in OpenAPI from the same model.

FastAPI's own query-model support resolves every field per request; on the hottest route that costs more
than the database query. Here the model validates a plain dict (pydantic-core, one pass), and errors come
out as FastAPI's RequestValidationError, so they render exactly like every other 422.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $refs and drop the `null` branch of optional fields (a query parameter is absent, not null)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    if "anyOf" in node:
        variants = [variant for variant in node["anyOf"] if variant != {"type": "null"}]
        if len(variants) == 1:
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            node = {**_inline(variants[0], defs), **rest}
    return {key: _inline(value, defs) for key, value in node.items() if key != "title"}


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI `parameters` for a route that reads `model` from its query string."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    parameters = []
    for name, prop in schema["properties"].items():
        field = _inline(prop, defs)
        if "default" in field and field["default"] is None:
            del field["default"]
        description = field.pop("description", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": field}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    properties = model.model_json_schema()["properties"]
    return frozenset(
        name
        for name, prop in properties.items()
        if prop.get("type") == "array" or any(v.get("type") == "array" for v in prop.get("anyOf", ()))
    )


_LIST_FIELDS: dict[type[BaseModel], frozenset[str]] = {}


def parse_query(request: Request, model: type[M]) -> M:
    lists = _LIST_FIELDS.get(model)
    if lists is None:
        lists = _LIST_FIELDS[model] = _list_fields(model)
    params = request.query_params
    data = {
        name: params.getlist(name) if name in lists else params[name]
        for name in model.model_fields
        if name in params
    }
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("query", *item["loc"])} for item in error.errors(include_url=False)]
        ) from None
