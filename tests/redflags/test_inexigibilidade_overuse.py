from __future__ import annotations

import numpy as np
import pytest
from tests.redflags.conftest import contratacao, dataset, flagged, run


def buyer(index: int, inex_value: float, sphere: str = "M", year: int = 2025) -> list[dict[str, object]]:
    """Four dispensas of 10.000,00 and one inexigibilidade of `inex_value`."""
    cnpj = f"{index:014d}"
    common = {"buyer_cnpj": cnpj, "buyer_name": f"ORGAO {index}", "sphere": sphere, "year": year}
    rows = [contratacao(value_homologated=10_000.0, **common) for _ in range(4)]
    return [
        *rows,
        contratacao(value_homologated=inex_value, value_estimated=inex_value, modalidade_id=9, **common),
    ]


def peers(count: int = 19, **fields: object) -> list[dict[str, object]]:
    return [row for index in range(count) for row in buyer(index, 1_000.0 * index, **fields)]


def shares(values: list[float]) -> np.ndarray:
    return np.array(values) / (40_000 + np.array(values))


def test_buyer_far_above_its_sphere_is_flagged_on_its_inexigibilidades(check_finding) -> None:
    outlier = buyer(99, 200_000.0)
    result = run("inexigibilidade_overuse", dataset([*peers(), *outlier]))

    assert flagged(result) == {outlier[-1]["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    values = shares([1_000.0 * i for i in range(19)] + [200_000.0])
    q1, q3 = np.quantile(values, [0.25, 0.75])
    assert finding.evidence["tukey_fence"] == pytest.approx(q3 + 1.5 * (q3 - q1), abs=1e-4)
    assert finding.evidence["share"] == pytest.approx(200_000 / 240_000, abs=1e-4)
    assert finding.evidence["peer_group"] == {"sphere": "M", "year": 2025, "buyers": 20}
    assert finding.message.startswith(
        "Inexigibilidade de R$ 200.000,00 de ORGAO 99, que em 2025 contratou 83,3 % do seu valor por "
        "inexigibilidade (R$ 200.000,00 de R$ 240.000,00), acima da cerca de Tukey de "
    )
    assert finding.message.endswith("calculada entre 20 órgãos da esfera municipal")


def test_fewer_than_min_buyers_in_the_sphere_are_not_evaluated() -> None:
    rows = [*peers(18), *buyer(99, 200_000.0)]
    assert flagged(run("inexigibilidade_overuse", dataset(rows))) == set()


def test_spheres_and_years_are_separate_peer_groups() -> None:
    state = buyer(99, 200_000.0, sphere="E")
    other_year = buyer(98, 200_000.0, year=2024)
    assert flagged(run("inexigibilidade_overuse", dataset([*peers(), *state, *other_year]))) == set()


def test_share_at_the_fence_is_not_flagged_and_a_cent_above_is() -> None:
    base = [1_000.0 * i for i in range(19)]
    # The candidate is the largest share, so the quartiles do not depend on its exact value.
    q1, q3 = np.quantile(shares([*base, 1e9]), [0.25, 0.75])
    fence = q3 + 1.5 * (q3 - q1)
    at_fence = round(40_000 * fence / (1 - fence), 2)  # share(v) = v / (40.000 + v) = fence
    for value, expected in ((at_fence - 0.01, False), (at_fence + 0.01, True)):
        rows = [*peers(), *buyer(99, value)]
        result = run("inexigibilidade_overuse", dataset(rows), min_share=0.0)
        assert bool(flagged(result)) is expected


def test_min_share_keeps_tiny_shares_out() -> None:
    # Most buyers never use inexigibilidade: the fence is 0 and any use would stand out.
    rows = [row for index in range(20) for row in buyer(index, 0.0)] + buyer(99, 5_000.0)
    assert flagged(run("inexigibilidade_overuse", dataset(rows))) == set()
    assert flagged(run("inexigibilidade_overuse", dataset(rows), min_share=0.1)) == {
        rows[-1]["control_number"]
    }


def test_buyers_with_few_records_are_not_evaluated_and_missing_fields_are_skipped() -> None:
    small = buyer(99, 200_000.0)[1:]  # 4 records
    rows = [*peers(), *small]
    rows[0]["sphere"] = None
    result = run("inexigibilidade_overuse", dataset(rows))
    assert flagged(result) == set()
    assert result.skipped == 1
