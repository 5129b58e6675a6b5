"""Golden files: the full findings (messages and evidence) of indicators 9-16 on a fixed synthetic dataset.

A change in any message, score or evidence shows up here as a diff to review. After an intended change,
regenerate with `UPDATE_GOLDEN=1 pytest tests/redflags/test_golden.py` and review the diff before committing.
"""

from __future__ import annotations

import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.redflags.conftest import contratacao, contrato, dataset, run

GOLDEN = Path(__file__).parent / "golden"
RULES = (
    "supplier_concentration",
    "value_outlier",
    "invalid_supplier_id",
    "duplicate_purchase",
    "year_end_rush",
    "inexigibilidade_overuse",
    "heterogeneous_supplier",
    "benford_deviation",
)
OBJECTS = (
    "Aquisição de gasolina e óleo diesel",
    "Reforma da unidade básica de saúde",
    "Aquisição de medicamentos da farmácia básica",
    "Fornecimento de merenda escolar",
    "Licença de software de gestão",
    "Serviços de limpeza e conservação predial",
    "Locação de imóvel para a secretaria",
    "Assessoria jurídica",
)


def supplier_cnpj(index: int) -> str:
    from cidadao.domain.ids import cnpj_check_digits

    base = f"{10_000_000 + index:08d}0001"
    return base + cnpj_check_digits(base)


def golden_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(20250101)
    purchases: list[dict[str, Any]] = []
    contracts: list[dict[str, Any]] = []
    sequence = 0

    def add(buyer: str, day: datetime, value: float, modalidade: int = 8, supplier: str | None = None,
            object_: str | None = None, contract: bool = True, sphere: str = "M") -> None:  # fmt: skip
        nonlocal sequence
        sequence += 1
        purchase = contratacao(
            sequence=sequence,
            buyer_cnpj=buyer,
            buyer_name=f"MUNICIPIO {buyer[:4]}",
            sphere=sphere,
            year=day.year,
            modalidade_id=modalidade,
            object=object_ or rng.choice(OBJECTS),
            value_homologated=value,
            value_estimated=value,
            published_at=day,
        )
        purchases.append(purchase)
        if contract:
            # Suppliers specialise: five per kind of object.
            supplier = supplier or supplier_cnpj(5 * OBJECTS.index(purchase["object"]) + rng.randrange(5))
            contracts.append(
                contrato(
                    purchase,
                    sequence=sequence,
                    supplier_id=supplier,
                    supplier_name=f"FORNECEDOR {supplier[:8]}",
                    signed_at=day.date() + timedelta(days=3),
                )
            )

    # 30 ordinary municipal buyers: a purchase or two a month, log-normal values.
    buyers = [f"{1_000 + i:04d}0000000100" for i in range(30)]
    for buyer in buyers:
        for month in range(1, 13):
            for _ in range(rng.randint(1, 2)):
                day = datetime(2025, month, rng.randint(1, 28), 10)
                add(buyer, day, round(rng.lognormvariate(9.5, 0.8), 2), modalidade=rng.choice([8, 8, 8, 9]))
    # year_end_rush: buyer 0 spends heavily in the last days of December.
    for day in (18, 22, 29):
        add(buyers[0], datetime(2025, 12, day, 10), 95_000.0)
    # inexigibilidade_overuse: buyer 1 buys almost everything by inexigibilidade.
    for month in range(1, 13):
        add(buyers[1], datetime(2025, month, 15, 10), 48_000.0, modalidade=9, object_=OBJECTS[7])
    # value_outlier: one fuel purchase a hundred times the usual.
    add(buyers[2], datetime(2025, 6, 3, 10), 2_500_000.0, object_=OBJECTS[0])
    # supplier_concentration: one supplier takes most of buyer 3's money.
    for month in (2, 5, 7, 9, 11):
        add(buyers[3], datetime(2025, month, 10, 10), 150_000.0, supplier=supplier_cnpj(900))
    # duplicate_purchase: the same purchase registered twice, a week apart.
    for day in (7, 14):
        add(buyers[4], datetime(2025, 8, day, 10), 31_415.92, supplier=supplier_cnpj(901), object_=OBJECTS[6])
    # heterogeneous_supplier: one supplier sells fuel, works, medicines, meals and software.
    for index, object_ in enumerate(OBJECTS[:5]):
        add(
            buyers[5 + index],
            datetime(2025, 4, 10, 10),
            15_000.0,
            supplier=supplier_cnpj(902),
            object_=object_,
        )
    # invalid_supplier_id: a contract with a wrong check digit.
    add(buyers[6], datetime(2025, 3, 3, 10), 12_000.0, supplier="11222333000180")
    # benford_deviation: a buyer whose 320 values mostly start with 4.
    for index in range(320):
        value = 4_000.0 + 3.7 * index if index % 4 else round(rng.lognormvariate(9, 1.2), 2)
        add("99990000000100", datetime(2025, 1 + index % 12, 1 + index % 28, 9), value, contract=False)
    return purchases, contracts


@pytest.fixture(scope="module")
def golden_data() -> Any:
    purchases, contracts = golden_rows()
    return dataset(purchases, contracts)


def jsonl(findings: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(f, option=orjson.OPT_SORT_KEYS) + b"\n" for f in findings)


@pytest.mark.parametrize("rule", RULES)
def test_findings_match_the_golden_file(rule: str, golden_data: Any) -> None:
    result = run(rule, golden_data)
    actual = jsonl(sorted((f.as_dict() for f in result.findings), key=lambda f: f["record"]))
    path = GOLDEN / f"{rule}.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual)
    assert actual, f"{rule} flags nothing on the golden dataset"
    assert actual.decode() == path.read_text(encoding="utf-8")


def test_golden_scenarios_are_flagged_for_the_planted_reason(golden_data: Any) -> None:
    """The planted cases are what the golden files flag (not only incidental noise)."""
    assert date(2025, 12, 29).isoformat() in {
        f.evidence["published_at"][:10] for f in run("year_end_rush", golden_data).findings
    }
    assert any(f.evidence["value"] == 2_500_000.0 for f in run("value_outlier", golden_data).findings)
    assert any(
        f.evidence["supplier_id"] == supplier_cnpj(900)
        for f in run("supplier_concentration", golden_data).findings
    )
    assert any(f.evidence["value"] == 31_415.92 for f in run("duplicate_purchase", golden_data).findings)
    assert any(
        f.evidence["supplier_id"] == supplier_cnpj(902)
        for f in run("heterogeneous_supplier", golden_data).findings
    )
    assert [f.evidence["supplier_id"] for f in run("invalid_supplier_id", golden_data).findings] == [
        "11222333000180"
    ]
    assert {f.evidence["buyer_cnpj"] for f in run("benford_deviation", golden_data).findings} == {
        "99990000000100"
    }
    assert {f.evidence["buyer_cnpj"] for f in run("inexigibilidade_overuse", golden_data).findings} >= {
        "10010000000100"
    }
