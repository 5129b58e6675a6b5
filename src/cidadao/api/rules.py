"""`/v1/rules`: the red-flag indicators the engine runs, with legal basis and default parameters."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel
from starlette.responses import Response

from cidadao.api.deps import Reader
from cidadao.api.errors import ApiError
from cidadao.api.findings import RULE_PATTERN
from cidadao.api.responses import json_response
from cidadao.domain.records import Severity

router = APIRouter(prefix="/v1", tags=["rules"])


class Rule(BaseModel):
    id: str
    version: str
    title: str
    description: str
    legal_basis: str | None
    reference: str
    severity: Severity
    scope: str
    defaults: dict[str, Any]


class RuleList(BaseModel):
    items: list[Rule]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def load_rules() -> list[dict[str, Any]]:
    """Every registered indicator, by id (empty until the red-flag package provides them)."""
    try:
        registry: dict[str, Any] = importlib.import_module("cidadao.redflags").REGISTRY
        importlib.import_module("cidadao.redflags.indicators")  # registers them
    except (ImportError, AttributeError):
        return []
    return [
        {
            "id": indicator.id,
            "version": indicator.version,
            "title": indicator.title,
            "description": indicator.description,
            "legal_basis": indicator.legal_basis,
            "reference": indicator.reference,
            "severity": str(indicator.severity),
            "scope": indicator.scope,
            "defaults": _json_safe(dict(indicator.defaults)),
        }
        for _id, indicator in sorted(registry.items())
    ]


@router.get("/rules", response_model=RuleList, summary="Red-flag indicators")
def list_rules(_principal: Reader) -> Response:
    return json_response({"items": load_rules()})


@router.get("/rules/{rule_id}", response_model=Rule, summary="One red-flag indicator")
def get_rule(rule_id: Annotated[str, Path(pattern=RULE_PATTERN)], _principal: Reader) -> Response:
    for rule in load_rules():
        if rule["id"] == rule_id:
            return json_response(rule)
    raise ApiError(404, f"rule {rule_id} not found", param="rule_id", location="path")
