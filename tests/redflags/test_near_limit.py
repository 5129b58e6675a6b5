from __future__ import annotations

import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run

from cidadao.domain.records import Severity

LIMIT = 62_725.59


@pytest.mark.parametrize(
    ("value", "expected"),
    # 90 % of the limit is 56.453,031: the first cent inside the band is 56.453,04.
    [(56_453.04, True), (56_453.03, False), (LIMIT - 0.01, True), (LIMIT, False)],
)
def test_band_edges(value: float, expected: bool) -> None:
    purchase = contratacao(value_homologated=value)
    assert bool(run("near_limit", dataset([purchase])).findings) is expected


def test_finding_message_and_evidence(check_finding) -> None:
    purchase = contratacao(value_homologated=60_000.0)
    finding = run("near_limit", dataset([purchase])).findings[0]

    check_finding(finding)
    assert finding.severity is Severity.LOW
    assert finding.message == (
        "Dispensa de R$ 60.000,00 fica R$ 2.725,59 abaixo do limite de R$ 62.725,59 vigente em 2025 "
        "(95,6 % do limite; Lei 14.133/2021, art. 75, II; Decreto 12.343/2024)"
    )
    assert finding.evidence["band"] == [0.9, 1.0]
    assert finding.evidence["ratio"] == pytest.approx(0.9565, abs=1e-4)


def test_band_is_configurable() -> None:
    purchase = contratacao(value_homologated=55_000.0)  # 87,7 % of the limit
    assert run("near_limit", dataset([purchase])).findings == []
    assert flagged(run("near_limit", dataset([purchase]), band_low=0.85)) == {purchase["control_number"]}


def test_band_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="band_low"):
        run("near_limit", dataset([contratacao()]), band_low=1.2)
