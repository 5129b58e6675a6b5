from __future__ import annotations

from datetime import date

from tests.redflags.conftest import award, awards_dataset, flagged, run

OBJECTS = {
    "combustivel": "Aquisição de gasolina comum",
    "obras_engenharia": "Reforma da escola municipal",
    "medicamentos": "Aquisição de medicamentos",
    "alimentacao": "Fornecimento de merenda escolar",
    "ti": "Licença de software de gestão",
    "limpeza": "Serviços de limpeza predial",
}


def supplier_awards(index: int, classes: list[str]) -> list[tuple[dict, dict]]:
    supplier = f"{index:014d}"
    return [
        award(object=OBJECTS[name], c_supplier_id=supplier, c_supplier_name=f"F{index}") for name in classes
    ]


def peers(count: int = 20) -> list[tuple[dict, dict]]:
    # Ordinary suppliers sell one or two kinds of thing.
    return [
        pair
        for index in range(count)
        for pair in supplier_awards(index, ["combustivel", "combustivel"] if index % 2 else ["ti", "limpeza"])
    ]


def test_supplier_in_many_classes_is_flagged_once_on_its_latest_direct_award(check_finding) -> None:
    odd = supplier_awards(99, ["combustivel", "obras_engenharia", "medicamentos", "alimentacao"])
    odd[1][1]["signed_at"] = date(2025, 11, 30)
    result = run("heterogeneous_supplier", awards_dataset([*peers(), *odd]))

    assert flagged(result) == {odd[1][1]["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.evidence["object_class"] == "obras_engenharia"
    assert sorted(finding.evidence["related_records"]) == sorted(c["control_number"] for _, c in odd)
    assert finding.evidence["classes"] == 4
    assert finding.evidence["class_counts"] == {
        "alimentacao": 1,
        "combustivel": 1,
        "medicamentos": 1,
        "obras_engenharia": 1,
    }
    # 21 suppliers: ten with 1 class, eleven with 2 (the odd one has 4) -> Q1 1, Q3 2, fence 3,5.
    assert finding.evidence["tukey_fence"] == 3.5
    assert finding.message == (
        "O fornecedor F99 tem 4 contratos diretos em 4 classes de objeto distintas (alimentacao, "
        "combustivel, medicamentos, obras_engenharia), acima da cerca de Tukey de 3,5 calculada entre 21 "
        "fornecedores"
    )


def test_at_the_fence_is_not_flagged() -> None:
    odd = supplier_awards(99, ["combustivel", "obras_engenharia", "medicamentos"])
    assert flagged(run("heterogeneous_supplier", awards_dataset([*peers(), *odd]))) == set()


def test_min_classes_and_min_suppliers() -> None:
    odd = supplier_awards(99, ["combustivel", "obras_engenharia", "medicamentos", "alimentacao"])
    assert flagged(run("heterogeneous_supplier", awards_dataset([*peers(18), *odd]))) == set()
    assert flagged(run("heterogeneous_supplier", awards_dataset([*peers(), *odd]), min_classes=5)) == set()


def test_other_class_and_competitive_contracts_do_not_count() -> None:
    odd = supplier_awards(99, ["combustivel", "obras_engenharia", "medicamentos"])
    odd.append(award(object="Objeto sem classe conhecida", c_supplier_id=f"{99:014d}"))
    odd.append(award(object=OBJECTS["ti"], modalidade_id=6, c_supplier_id=f"{99:014d}"))
    assert flagged(run("heterogeneous_supplier", awards_dataset([*peers(), *odd]))) == set()


def test_missing_supplier_or_object_is_skipped() -> None:
    pairs = peers()
    pairs[0][1]["supplier_id"] = None
    pairs[1][0]["object"] = None
    pairs[1][1]["object"] = None
    assert run("heterogeneous_supplier", awards_dataset(pairs)).skipped == 2
