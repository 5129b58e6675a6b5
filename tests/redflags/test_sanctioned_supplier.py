from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from tests.redflags.conftest import SUPPLIER, award, contrato

from cidadao.domain.records import Severity
from cidadao.redflags.base import REGISTRY
from cidadao.redflags.frame import dataset_from_frames


def _run(contracts: list[dict], sanctions: list[dict]) -> list:
    data = dataset_from_frames(
        None, pl.DataFrame(contracts, infer_schema_length=None), pl.DataFrame(sanctions)
    )
    indicator = REGISTRY["sanctioned_supplier"]
    return indicator.run(data, indicator.defaults).findings


def _sanction(start: date, end: date | None, supplier: str = SUPPLIER, lst: str = "CEIS") -> dict:
    return {
        "sanction_list": lst,
        "sanctioned_id": supplier,
        "sanctioned_name": "FORNECEDOR TESTE LTDA",
        "category": "Suspensão",
        "authority": "Prefeitura",
        "start_date": start,
        "end_date": end,
    }


@pytest.mark.parametrize(
    ("signed", "expected"),
    [
        (date(2024, 12, 31), False),
        (date(2025, 1, 1), True),
        (date(2025, 6, 30), True),
        (date(2025, 7, 1), False),
    ],
)
def test_sanction_in_force_on_the_signature_day(signed: date, expected: bool) -> None:
    findings = _run([contrato(signed_at=signed)], [_sanction(date(2025, 1, 1), date(2025, 6, 30))])
    assert bool(findings) is expected


def test_open_ended_sanction_and_finding(check_finding) -> None:
    _, contract = award(c_signed_at=date(2025, 3, 15))
    findings = _run(
        [contract], [_sanction(date(2024, 1, 1), None), _sanction(date(2020, 1, 1), None, lst="CNEP")]
    )

    assert len(findings) == 1
    finding = findings[0]
    check_finding(finding)
    assert finding.severity is Severity.CRITICAL
    assert finding.message == (
        "Contrato assinado em 15/03/2025 com o fornecedor 11.222.333/0001-81, que tinha sanção no CNEP "
        "(Suspensão, de 01/01/2020 sem data final) e outras 1 "
        "(Lei 14.133/2021, art. 14, III; art. 156, III e IV)"
    )
    assert [s["list"] for s in finding.evidence["sanctions"]] == ["CNEP", "CEIS"]


def test_other_supplier_and_missing_fields() -> None:
    other = contrato(signed_at=date(2025, 3, 1), supplier_id="60701190000104")
    unsigned = contrato(signed_at=None)
    data = dataset_from_frames(
        None,
        pl.DataFrame([other, unsigned], infer_schema_length=None),
        pl.DataFrame([_sanction(date(2020, 1, 1), None)]),
    )
    indicator = REGISTRY["sanctioned_supplier"]
    result = indicator.run(data, indicator.defaults)

    assert result.findings == []
    assert result.skipped == 1
