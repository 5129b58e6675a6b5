from __future__ import annotations

import math

import numpy as np
import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run

# 24 ordinary purchases spread over 8.000,00 .. 12.600,00 (log-scale IQR well above zero).
PEERS = [8_000.0 + 200.0 * i for i in range(24)]


def purchases(values: list[float], **fields: object) -> list[dict[str, object]]:
    return [contratacao(value_homologated=value, **fields) for value in values]


def test_value_many_times_the_peers_is_flagged(check_finding) -> None:
    rows = purchases(PEERS)
    outlier = contratacao(value_homologated=150_000.0)
    result = run("value_outlier", dataset([*rows, outlier]))

    assert flagged(result) == {outlier["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    evidence = finding.evidence
    assert evidence["peers"] == 25
    assert evidence["peer_group"] == {"object_class": "outros", "modalidade_id": 8}
    logs = np.log10([*PEERS, 150_000.0])
    median = np.median(logs)
    mad = np.median(np.abs(logs - median))
    assert evidence["modified_z"] == pytest.approx(0.6745 * (math.log10(150_000) - median) / mad, abs=0.01)
    q1, q3 = np.quantile(logs, [0.25, 0.75])
    assert evidence["tukey_fence"] == pytest.approx(10 ** (q3 + 1.5 * (q3 - q1)), abs=0.01)
    assert evidence["criteria"] == ["by_z", "by_tukey"]
    assert finding.message.startswith("Dispensa de R$ 150.000,00 muito acima de 25 compras comparáveis")


def test_groups_below_min_peers_are_not_evaluated() -> None:
    rows = purchases(PEERS[:18])
    outlier = contratacao(value_homologated=150_000.0)
    result = run("value_outlier", dataset([*rows, outlier]))
    assert result.findings == []
    assert result.meta["groups_evaluated"] == 0


def test_one_cent_at_or_below_the_fence_is_not_flagged_and_one_cent_above_is() -> None:
    # The candidate is the group's maximum, so the quartiles (hence the fence) do not depend on its value.
    logs = np.log10([*PEERS, 1e9])
    q1, q3 = np.quantile(logs, [0.25, 0.75])
    below = math.floor(10 ** (q3 + 1.5 * (q3 - q1)) * 100) / 100
    for value, expected in ((below, False), (below + 0.01, True)):
        extra = contratacao(value_homologated=value)
        result = run(
            "value_outlier", dataset([*purchases(PEERS), extra]), z_threshold=1e3, min_ratio_to_median=1.0
        )
        assert (extra["control_number"] in flagged(result)) is expected


def test_value_below_twice_the_median_is_not_flagged() -> None:
    rows = purchases([10_000.0] * 23 + [10_500.0])
    near = contratacao(value_homologated=19_999.99)
    assert flagged(run("value_outlier", dataset([*rows, near]))) == set()


def test_comparison_is_within_object_class_and_modalidade() -> None:
    rows = purchases(PEERS)
    works = contratacao(value_homologated=150_000.0, object="Reforma da escola municipal")
    inex = contratacao(value_homologated=150_000.0, modalidade_id=9)
    assert flagged(run("value_outlier", dataset([*rows, works, inex]))) == set()


def test_identical_values_use_the_mean_deviation_and_no_tukey_fence() -> None:
    rows = purchases([10_000.0] * 23 + [10_500.0])
    outlier = contratacao(value_homologated=30_000.0)
    result = run("value_outlier", dataset([*rows, outlier]))
    assert flagged(result) == {outlier["control_number"]}
    assert result.findings[0].evidence["criteria"] == ["by_z"]


def test_missing_or_zero_values_are_skipped() -> None:
    rows = purchases(PEERS)
    rows[0]["value_homologated"] = rows[0]["value_estimated"] = None
    rows[1]["value_homologated"] = rows[1]["value_estimated"] = 0.0
    rows[2]["object"] = None
    assert run("value_outlier", dataset(rows)).skipped == 3
