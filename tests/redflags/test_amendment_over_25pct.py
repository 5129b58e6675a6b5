from __future__ import annotations

import pytest
from tests.redflags.conftest import contrato, dataset, flagged, run

from cidadao.domain.records import Severity


@pytest.mark.parametrize(
    ("initial", "global_", "expected"),
    [(100_000.0, 125_000.0, False), (100_000.0, 125_000.01, True), (80_000.0, 80_000.0, False)],
)
def test_exactly_25_percent_is_allowed_one_cent_more_is_not(
    initial: float, global_: float, expected: bool
) -> None:
    row = contrato(value_initial=initial, value_global=global_)
    assert bool(run("amendment_over_25pct", dataset(contratos=[row])).findings) is expected


def test_finding(check_finding) -> None:
    row = contrato(value_initial=100_000.0, value_global=140_000.0)
    finding = run("amendment_over_25pct", dataset(contratos=[row])).findings[0]

    check_finding(finding)
    assert finding.severity is Severity.HIGH
    assert finding.message == (
        "Contrato com valor global de R$ 140.000,00 excede em R$ 15.000,00 o máximo de R$ 125.000,00 (valor "
        "inicial de R$ 100.000,00 + 25 % de acréscimos; Lei 14.133/2021, art. 125)"
    )
    assert finding.evidence["increase"] == 0.4
    assert finding.evidence["link"].startswith("https://pncp.gov.br/app/contratos/00394460000141/2025/")


def test_renovation_of_a_building_may_grow_up_to_50_percent() -> None:
    reforma = contrato(
        value_initial=100_000.0, value_global=140_000.0, object="Reforma do prédio da prefeitura"
    )
    beyond = contrato(value_initial=100_000.0, value_global=151_000.0, object="REFORMA da escola")
    result = run("amendment_over_25pct", dataset(contratos=[reforma, beyond]))

    assert flagged(result) == {beyond["control_number"]}
    assert result.findings[0].evidence["max_increase"] == 0.5


def test_missing_or_zero_initial_value_is_skipped() -> None:
    rows = [contrato(value_initial=None, value_global=10.0), contrato(value_initial=0.0, value_global=10.0)]
    result = run("amendment_over_25pct", dataset(contratos=rows))

    assert result.findings == []
    assert result.skipped == 2
