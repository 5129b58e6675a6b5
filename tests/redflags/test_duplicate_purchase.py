from __future__ import annotations

import itertools
import random
from datetime import date, datetime, timedelta

import pytest
from tests.redflags.conftest import award, awards_dataset, contratacao, dataset, flagged, run

OTHER = "60701190000104"


def contracts_only(pairs: list[tuple[dict, dict]]) -> set[str]:
    """Flags on contratos (supplier match); objects differ so contratações never match."""
    for index, (purchase, _) in enumerate(pairs):
        purchase["object"] = f"Objeto distinto numero {index}"
    return flagged(run("duplicate_purchase", awards_dataset(pairs)))


def test_same_supplier_value_within_one_percent_and_30_days_is_flagged_both_ways(check_finding) -> None:
    first = award(value_homologated=10_000.0, c_signed_at=date(2025, 3, 1))
    second = award(value_homologated=10_100.0, c_signed_at=date(2025, 3, 31))
    pairs = [first, second]
    for index, (purchase, _) in enumerate(pairs):
        purchase["object"] = f"Objeto distinto numero {index}"
    result = run("duplicate_purchase", awards_dataset(pairs))

    assert flagged(result) == {first[1]["control_number"], second[1]["control_number"]}
    finding = next(f for f in result.findings if f.record == first[1]["control_number"])
    check_finding(finding)
    assert finding.evidence["match"] == "supplier"
    assert finding.evidence["related_records"] == [
        {
            "record": second[1]["control_number"],
            "value": 10_100.0,
            "date": "2025-03-31",
            "difference": 0.009901,
        }
    ]
    assert finding.message == (
        "Contrato de R$ 10.000,00 em 01/03/2025 tem valor e data próximos de outra do mesmo órgão com o "
        f"mesmo fornecedor: R$ 10.100,00 em 31/03/2025 ({second[1]['control_number']})"
    )
    assert result.meta == {"pairs": {"supplier": 1, "object": 0}}


@pytest.mark.parametrize(
    ("value", "signed", "expected"),
    [
        (10_101.02, date(2025, 3, 31), False),  # 1.0001 % of the larger value
        (10_101.01, date(2025, 3, 31), True),  # just within 1 %
        (10_000.00, date(2025, 4, 1), False),  # 31 days apart
        (10_000.00, date(2025, 1, 30), True),  # 30 days before, across a month boundary
    ],
)
def test_edges_of_tolerance_and_window(value: float, signed: date, expected: bool) -> None:
    first = award(value_homologated=10_000.0, c_signed_at=date(2025, 3, 1))
    second = award(value_homologated=value, c_signed_at=signed)
    assert bool(contracts_only([first, second])) is expected


def test_year_boundary_does_not_separate_duplicates() -> None:
    first = award(value_homologated=5_000.0, c_signed_at=date(2025, 12, 20))
    second = award(value_homologated=5_000.0, c_signed_at=date(2026, 1, 5))
    assert len(contracts_only([first, second])) == 2


def test_other_supplier_or_other_buyer_is_not_a_duplicate() -> None:
    first = award(value_homologated=10_000.0)
    other_supplier = award(value_homologated=10_000.0, c_supplier_id=OTHER)
    other_buyer = award(value_homologated=10_000.0, buyer_cnpj="60701190000104")
    assert contracts_only([first, other_supplier, other_buyer]) == set()


def test_same_normalised_object_flags_the_contratacoes() -> None:
    first = contratacao(object="Aquisição de  PNEUS para a frota", published_at=datetime(2025, 5, 2, 9))
    second = contratacao(object="aquisicao de pneus para a frota", published_at=datetime(2025, 5, 20, 17))
    short = [contratacao(object="Pneus"), contratacao(object="pneus")]  # too generic to tell anything
    result = run("duplicate_purchase", dataset([first, second, *short]))
    assert flagged(result) == {first["control_number"], second["control_number"]}
    assert {f.evidence["match"] for f in result.findings} == {"object"}


def test_missing_fields_are_skipped() -> None:
    pairs = [award(), award()]
    pairs[0][1]["signed_at"] = None
    pairs[1][1]["supplier_id"] = None
    result = run("duplicate_purchase", awards_dataset(pairs))
    assert result.skipped == 2
    assert all(f.evidence["match"] == "object" for f in result.findings)


def test_bucketed_search_equals_brute_force() -> None:
    rng = random.Random(7)
    start = date(2025, 1, 1)
    pairs = [
        award(
            value_homologated=round(
                rng.choice([1_000.0, 1_005.0, 1_010.0, 1_020.0, 2_000.0]) + rng.random(), 2
            ),
            object=f"Objeto distinto numero {index}",
            c_signed_at=start + timedelta(days=rng.randrange(0, 120)),
            c_supplier_id=rng.choice(["11222333000181", OTHER]),
        )
        for index in range(60)
    ]
    contratos = [c for _, c in pairs]
    expected = set()
    for a, b in itertools.permutations(contratos, 2):
        va, vb = a["value_global"], b["value_global"]
        if (
            a["supplier_id"] == b["supplier_id"]
            and abs(va - vb) <= 0.01 * max(va, vb)
            and abs((a["signed_at"] - b["signed_at"]).days) <= 30
        ):
            expected.add(a["control_number"])
    assert expected
    assert contracts_only(pairs) == expected
