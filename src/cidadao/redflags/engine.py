"""Run registered indicators over a Dataset with validated parameters.

Parameters come from each indicator's `defaults`, overridden by a `redflags.toml` (`[over_limit]` then
`band_low = 0.9`) and then by environment variables `REDFLAGS__<RULE>__<PARAM>` (e.g.
`REDFLAGS__NEAR_LIMIT__BAND_LOW=0.85`). Unknown rules or parameters and values of the wrong type are errors.
"""

from __future__ import annotations

import gc
import json
import os
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import structlog

from cidadao.domain.records import Finding
from cidadao.redflags.base import REGISTRY, Dataset, Indicator, RuleResult

log = structlog.get_logger(__name__)

ENV_PREFIX = "REDFLAGS__"


class RulesConfigError(ValueError):
    """A rule or parameter name is unknown, or a value has the wrong type."""


def _indicator(rule: str) -> Indicator:
    try:
        return REGISTRY[rule]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise RulesConfigError(f"unknown rule {rule!r} (known: {known})") from None


def _coerce(rule: str, name: str, default: Any, value: Any, from_env: bool) -> Any:
    """`value` converted to the type of `default`; environment values arrive as text."""
    where = f"{ENV_PREFIX}{rule.upper()}__{name.upper()}" if from_env else f"[{rule}] {name}"
    if from_env and isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise RulesConfigError(f"{where}: expected true or false, got {value!r}")
            return lowered in ("true", "1", "yes")
        if isinstance(default, list | tuple):
            text = value.strip()
            items = [item.strip() for item in text.split(",") if item.strip()]
            value = json.loads(text) if text.startswith("[") else items
        else:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise RulesConfigError(f"{where}: expected a number, got {value!r}") from None
    expected: type | tuple[type, ...]
    if isinstance(default, bool):
        expected = bool
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, list | tuple):
        expected = (list, tuple)
    else:
        expected = type(default)
    if (isinstance(value, bool) and not isinstance(default, bool)) or not isinstance(value, expected):
        raise RulesConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    if isinstance(value, int) and isinstance(default, float):
        return float(value)
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return value


@dataclass(frozen=True)
class RulesConfig:
    """Parameter overrides per rule, already validated against the registry."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> RulesConfig:
        """Overrides from a redflags.toml (optional) and then from REDFLAGS__<RULE>__<PARAM> variables."""
        overrides: dict[str, dict[str, Any]] = {}
        if path is not None:
            try:
                table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise RulesConfigError(f"cannot read rules config {path}: {error}") from None
            for rule, params in table.items():
                if not isinstance(params, dict):
                    raise RulesConfigError(f"{path}: [{rule}] must be a table of parameters")
                for name, value in params.items():
                    overrides.setdefault(rule, {})[name] = cls._checked(rule, name, value, from_env=False)
        for key, value in sorted((os.environ if environ is None else environ).items()):
            if not key.upper().startswith(ENV_PREFIX):
                continue
            parts = key[len(ENV_PREFIX) :].split("__")
            if len(parts) != 2:
                raise RulesConfigError(f"{key}: expected {ENV_PREFIX}<RULE>__<PARAM>")
            rule, name = parts[0].lower(), parts[1].lower()
            overrides.setdefault(rule, {})[name] = cls._checked(rule, name, value, from_env=True)
        return cls(overrides)

    @staticmethod
    def _checked(rule: str, name: str, value: Any, from_env: bool) -> Any:
        indicator = _indicator(rule)
        if name not in indicator.defaults:
            known = ", ".join(sorted(indicator.defaults)) or "none"
            raise RulesConfigError(f"unknown parameter {name!r} of rule {rule!r} (known: {known})")
        return _coerce(rule, name, indicator.defaults[name], value, from_env)

    def params(self, rule: str) -> dict[str, Any]:
        """Effective parameters of `rule`: defaults with overrides applied."""
        return {**_indicator(rule).defaults, **self.overrides.get(rule, {})}


@dataclass(frozen=True)
class EngineResult:
    findings: list[Finding]
    per_rule: dict[str, RuleResult]
    elapsed: dict[str, float]  # seconds per rule
    errors: dict[str, str] = field(default_factory=dict)  # rule -> error, for rules that raised


def run_rules(
    data: Dataset, rules: Sequence[str] | None = None, config: RulesConfig | None = None
) -> EngineResult:
    """Run `rules` (default: all registered) over `data`; findings sorted by rule, record.

    A rule that raises is reported in `errors` and logged; the other rules still run, so one faulty indicator
    never silences the rest.
    """
    config = config or RulesConfig()
    selected = sorted(REGISTRY) if rules is None else list(dict.fromkeys(rules))
    indicators = [_indicator(rule) for rule in selected]
    per_rule: dict[str, RuleResult] = {}
    elapsed: dict[str, float] = {}
    errors: dict[str, str] = {}
    with _cyclic_gc_paused():
        for indicator in indicators:
            started = time.perf_counter()
            try:
                per_rule[indicator.id] = indicator.run(data, config.params(indicator.id))
            except Exception as error:
                log.exception("redflags.rule_failed", rule=indicator.id)
                errors[indicator.id] = f"{type(error).__name__}: {error}"
            elapsed[indicator.id] = time.perf_counter() - started
        # Sorted by rule, then record (a rule's findings carry its id).
        findings = [
            finding
            for rule in sorted(per_rule)
            for finding in sorted(per_rule[rule].findings, key=attrgetter("record"))
        ]
    return EngineResult(findings=findings, per_rule=per_rule, elapsed=elapsed, errors=errors)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Rules build many small objects that form no cycles (findings, evidence dicts, member lists), and the
    cyclic collector would rescan the growing pile again and again: about a third of split_purchase's time
    at a million records. Reference counting still frees everything meanwhile.

    The containers built while paused still count towards a collection, which would run at the first
    allocation after the pause and scan them all (a tenth of split_purchase's time). Freezing and at once
    unfreezing moves every tracked object to the oldest generation and clears that count: the results are
    long-lived anyway, and full collections still see (and free) everything. Skipped when the process holds
    frozen objects of its own (the API, a bulk ingestion): unfreezing would release those too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
