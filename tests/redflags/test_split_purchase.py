from __future__ import annotations

from datetime import datetime

from tests.redflags.conftest import award, awards_dataset, contratacao, contrato, dataset, flagged, run

from cidadao.domain.records import Severity

LIMIT = 62_725.59


def _same_supplier(*values: float, **fields: object) -> list[tuple[dict, dict]]:
    return [
        award(value_homologated=value, object=f"Serviço avulso {i}", **fields)
        for i, value in enumerate(values)
    ]


def test_same_supplier_group_reaching_the_limit_flags_every_record(check_finding) -> None:
    pairs = _same_supplier(25_000.0, 25_000.0, 15_000.0)
    result = run("split_purchase", awards_dataset(pairs))

    assert flagged(result) == {purchase["control_number"] for purchase, _ in pairs}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.severity is Severity.HIGH
    assert finding.evidence["sum"] == 65_000.0
    assert finding.evidence["peer_group"]["nature"] == "supplier"
    assert sorted(r["record"] for r in finding.evidence["records"]) == sorted(
        p["control_number"] for p, _ in pairs
    )
    assert finding.message.startswith(
        "Dispensa de R$ 25.000,00 é uma de 3 dispensas da mesma unidade em 2025 "
    )
    assert finding.message.endswith(
        "para o mesmo fornecedor que somam R$ 65.000,00, acima do limite de R$ 62.725,59 "
        "(Lei 14.133/2021, art. 75, §1º; Decreto 12.343/2024)"
    )


def test_sum_exactly_at_the_limit_is_flagged_and_one_cent_below_is_not() -> None:
    at = _same_supplier(30_000.0, LIMIT - 30_000.0)
    below = _same_supplier(30_000.0, round(LIMIT - 30_000.01, 2), c_supplier_id="60701190000104")
    result = run("split_purchase", awards_dataset(at + below))

    assert flagged(result) == {purchase["control_number"] for purchase, _ in at}
    assert "igual ao limite" in result.findings[0].message


def test_object_class_groups_without_a_known_supplier() -> None:
    purchases = [
        contratacao(value_homologated=22_000.0, object=f"Aquisição de medicamentos lote {i}")
        for i in range(3)
    ]
    others = [contratacao(value_homologated=30_000.0, object=f"Material de expediente {i}") for i in range(3)]
    result = run("split_purchase", dataset(purchases + others))

    # Medicamentos group: 66.000 >= limit; "outros" (expediente) is not a nature.
    assert flagged(result) == {p["control_number"] for p in purchases}
    assert result.findings[0].evidence["peer_group"]["key"] == "medicamentos"


def test_groups_do_not_cross_units_years_or_records_over_the_limit() -> None:
    unit_a = _same_supplier(40_000.0)
    unit_b = _same_supplier(40_000.0, unit_code="2")
    next_year = _same_supplier(40_000.0, published_at=datetime(2026, 1, 5), year=2026)
    over = _same_supplier(70_000.0)  # over_limit's business, not a split
    result = run("split_purchase", awards_dataset(unit_a + unit_b + next_year + over))

    assert result.findings == []


def test_missing_unit_is_skipped_and_counted() -> None:
    pairs = _same_supplier(40_000.0, 40_000.0, unit_code=None)
    result = run("split_purchase", awards_dataset(pairs))

    assert result.findings == []
    assert result.skipped == 2


def test_supplier_grouping_can_be_switched_off() -> None:
    pairs = _same_supplier(40_000.0, 40_000.0)
    assert run("split_purchase", awards_dataset(pairs), by_supplier=False).findings == []


def test_a_dispensa_counts_once_however_many_contratos_it_has_with_the_supplier() -> None:
    (first, contract), (second, other_contract) = _same_supplier(35_000.0, 20_000.0)
    amendment = contrato(first, sequence=900)  # a second contrato of `first` with the same supplier
    pairs = dataset([first, second], [contract, amendment, other_contract])
    # 35.000 + 20.000 stays under the limit: `first` is not counted twice.
    assert run("split_purchase", pairs, by_object_class=False).findings == []

    ((third, third_contract),) = _same_supplier(10_000.0)
    grown = dataset([first, second, third], [contract, amendment, other_contract, third_contract])
    result = run("split_purchase", grown, by_object_class=False)
    assert flagged(result) == {first["control_number"], second["control_number"], third["control_number"]}
    assert result.findings[0].evidence["sum"] == 65_000.0
