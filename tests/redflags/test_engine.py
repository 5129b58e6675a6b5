from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.redflags.conftest import award, awards_dataset, contratacao, dataset

from cidadao.domain.records import Severity
from cidadao.redflags.base import REGISTRY, Dataset, Indicator, RuleResult, register
from cidadao.redflags.engine import RulesConfig, RulesConfigError, run_rules


def test_toml_then_environment_override_defaults(tmp_path: Path) -> None:
    path = tmp_path / "redflags.toml"
    path.write_text("[near_limit]\nband_low = 0.85\n\n[repeat_supplier]\nmin_awards = 4\n", encoding="utf-8")
    config = RulesConfig.load(path, environ={"REDFLAGS__REPEAT_SUPPLIER__MIN_AWARDS": "5", "OTHER": "x"})

    assert config.params("near_limit") == {"band_low": 0.85, "doubled_cnpjs": []}
    assert config.params("repeat_supplier")["min_awards"] == 5
    assert config.params("over_limit") == dict(REGISTRY["over_limit"].defaults)


def test_environment_values_are_typed_like_the_defaults() -> None:
    config = RulesConfig.load(
        environ={
            "REDFLAGS__OVER_LIMIT__DOUBLED_CNPJS": "60701190000104, 00394460000141",
            "REDFLAGS__SPLIT_PURCHASE__BY_OBJECT_CLASS": "false",
            "REDFLAGS__NEAR_LIMIT__BAND_LOW": "0.8",
        }
    )
    assert config.params("over_limit")["doubled_cnpjs"] == ["60701190000104", "00394460000141"]
    assert config.params("split_purchase")["by_object_class"] is False
    assert config.params("near_limit")["band_low"] == 0.8


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[no_such_rule]\nx = 1\n", "unknown rule 'no_such_rule'"),
        ("[near_limit]\nband = 0.8\n", "unknown parameter 'band' of rule 'near_limit'"),
        ('[near_limit]\nband_low = "high"\n', r"\[near_limit\] band_low: expected float"),
        ("[repeat_supplier]\nmin_awards = 2.5\n", "expected int"),
        ("[split_purchase]\nby_supplier = 1\n", "expected bool"),
        ("near_limit = 1\n", "must be a table"),
        ("[near_limit\n", "cannot read rules config"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "redflags.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(RulesConfigError, match=message):
        RulesConfig.load(path, environ={})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(RulesConfigError, match="REDFLAGS__REPEAT_SUPPLIER__MIN_AWARDS: expected a number"):
        RulesConfig.load(environ={"REDFLAGS__REPEAT_SUPPLIER__MIN_AWARDS": "three"})
    with pytest.raises(RulesConfigError, match="expected REDFLAGS__<RULE>__<PARAM>"):
        RulesConfig.load(environ={"REDFLAGS__NEAR_LIMIT": "1"})


def test_run_rules_selects_times_and_sorts() -> None:
    pairs = [award(value_homologated=value) for value in (25_000.0, 25_000.0, 15_000.0, 70_000.0)]
    data = awards_dataset(pairs)
    result = run_rules(data, ["split_purchase", "over_limit"])

    assert set(result.per_rule) == set(result.elapsed) == {"split_purchase", "over_limit"}
    assert all(seconds >= 0 for seconds in result.elapsed.values())
    keys = [(f.rule, f.record) for f in result.findings]
    assert keys == sorted(keys)
    assert {f.rule for f in result.findings} == {"split_purchase", "over_limit"}
    with pytest.raises(RulesConfigError, match="unknown rule 'nope'"):
        run_rules(data, ["nope"])


def test_config_reaches_the_indicator() -> None:
    data = dataset([contratacao(value_homologated=55_000.0)])
    assert run_rules(data, ["near_limit"]).findings == []
    config = RulesConfig({"near_limit": {"band_low": 0.85}})
    assert len(run_rules(data, ["near_limit"], config).findings) == 1


class _TestRule(Indicator):
    """The contract shared by the throwaway rules these tests register (each adds id, texts and `run`)."""

    version = "1"
    legal_basis = None
    reference = "teste"
    severity = Severity.LOW
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {}
    needs = ()


@pytest.fixture
def broken_rule() -> Iterator[str]:
    @register
    class Broken(_TestRule):
        id = "test_broken"
        title = "Regra com defeito"
        description = "Sempre falha."

        def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
            raise RuntimeError("boom")

    yield Broken.id
    del REGISTRY[Broken.id]


def test_a_failing_rule_is_reported_and_the_others_still_run(broken_rule: str) -> None:
    data = dataset([contratacao(value_homologated=70_000.0)])
    result = run_rules(data, [broken_rule, "over_limit"])

    assert result.errors == {broken_rule: "RuntimeError: boom"}
    assert [f.rule for f in result.findings] == ["over_limit"]


def test_registry_holds_every_indicator_with_its_contract() -> None:
    engine_rules = {
        "over_limit", "near_limit", "split_purchase", "short_notice", "sanctioned_supplier",
        "amendment_over_25pct", "emergency_over_1y", "repeat_supplier",
    }  # fmt: skip
    assert engine_rules <= set(REGISTRY)
    for rule in engine_rules:
        indicator = REGISTRY[rule]
        assert indicator.id == rule
        assert indicator.title
        assert indicator.description
        assert indicator.reference
        assert indicator.scope in ("record", "buyer", "supplier", "global")
        assert indicator.needs


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def busy_rule() -> Iterator[str]:
    """A rule that builds many containers (as findings do) and leaves a reference cycle behind."""

    @register
    class Busy(_TestRule):
        id = "test_busy"
        title = "Regra trabalhosa"
        description = "Cria muitos objetos."
        cycles: ClassVar[list[weakref.ref[_Cycle]]] = []

        def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
            self.cycles.append(weakref.ref(_Cycle()))
            return RuleResult(findings=[], meta={"objects": [{"n": [n]} for n in range(20_000)]})

    yield Busy.id
    del REGISTRY[Busy.id]


def test_rules_pause_the_cyclic_collector_and_leave_no_collection_due(busy_rule: str) -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    frozen_before = gc.get_freeze_count()  # e.g. by an app factory another test ran
    gc.unfreeze()
    gc.callbacks.append(count)
    try:
        result = run_rules(dataset([]), [busy_rule])
    finally:
        gc.callbacks.remove(count)
        if frozen_before:
            gc.freeze()

    # 40,000 containers were built, yet no collection ran (none while paused, none due at the end).
    assert len(result.per_rule[busy_rule].meta["objects"]) == 20_000
    assert collections == []
    assert gc.isenabled()
    cycle = type(REGISTRY[busy_rule]).cycles[0]  # type: ignore[attr-defined]
    gc.collect()
    assert cycle() is None  # garbage cycles made meanwhile are still collected


def test_a_disabled_collector_stays_disabled(busy_rule: str) -> None:
    gc.disable()
    try:
        run_rules(dataset([]), [busy_rule])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_another_part_of_the_process_froze_stay_frozen(busy_rule: str) -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        run_rules(dataset([]), [busy_rule])
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
