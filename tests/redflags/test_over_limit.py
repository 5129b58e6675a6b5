from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from tests.redflags.conftest import award, awards_dataset, contratacao, dataset, flagged, run

from cidadao.domain.records import Severity
from cidadao.redflags.limits import LAW, act_for, legal_citation, legal_citation_expr, limit_for

LIMIT_2025_II = 62_725.59
LIMIT_2024_II = 59_906.02


def test_limits_table_holds_the_published_values() -> None:
    assert limit_for(2021, "II") == 50_000.00
    assert limit_for(2023, "I") == 114_416.65
    assert limit_for(2025, "II") == LIMIT_2025_II
    assert limit_for(2026, "I") == 130_984.20
    assert limit_for(2026, "II", doubled=True) == 130_984.22
    assert act_for(2025) == "Decreto 12.343/2024"
    assert limit_for(2020, "II") is None


def test_column_wise_citation_equals_legal_citation() -> None:
    rows = [
        (inciso, act, doubled)
        for inciso in ("I", "II")
        for act in (LAW, "Decreto 12.343/2024")
        for doubled in (False, True)
    ]
    frame = pl.DataFrame(rows, schema=["inciso", "act", "doubled"], orient="row")
    assert frame.select(legal_citation_expr()).to_series().to_list() == [legal_citation(*row) for row in rows]


def test_exactly_at_the_limit_is_flagged_with_the_decree(check_finding) -> None:
    purchase = contratacao(value_homologated=LIMIT_2025_II, value_estimated=1.0)
    result = run("over_limit", dataset([purchase]))

    assert flagged(result) == {purchase["control_number"]}
    finding = result.findings[0]
    check_finding(finding)
    assert finding.severity is Severity.HIGH
    assert finding.message == (
        "Dispensa de R$ 62.725,59 igual ao limite de R$ 62.725,59 vigente em 2025 "
        "(Lei 14.133/2021, art. 75, II; Decreto 12.343/2024)"
    )
    assert finding.legal_basis == "Lei 14.133/2021, art. 75, II; Decreto 12.343/2024"
    assert finding.evidence["value_source"] == "valorTotalHomologado"
    assert finding.evidence["link"] == "https://pncp.gov.br/app/editais/00394460000141/2025/" + str(
        purchase["sequence"]
    )


def test_one_cent_below_is_not_over_but_near() -> None:
    purchase = contratacao(value_homologated=LIMIT_2025_II - 0.01)
    data = dataset([purchase])

    assert run("over_limit", data).findings == []
    assert flagged(run("near_limit", data)) == {purchase["control_number"]}


def test_twice_the_limit_is_critical_with_full_score() -> None:
    result = run("over_limit", dataset([contratacao(value_homologated=2 * LIMIT_2025_II)]))

    assert result.findings[0].severity is Severity.CRITICAL
    assert result.findings[0].score == 1.0


def test_estimated_value_is_used_when_not_homologated() -> None:
    purchase = contratacao(value_homologated=None, value_estimated=70_000.0)
    finding = run("over_limit", dataset([purchase])).findings[0]

    assert finding.evidence["value"] == 70_000.0
    assert finding.evidence["value_source"] == "valorTotalEstimado"


@pytest.mark.parametrize(
    ("published", "expected"),
    [(datetime(2024, 12, 31, 23, 59), True), (datetime(2025, 1, 1, 0, 1), False)],
)
def test_limit_of_the_publication_year_applies(published: datetime, expected: bool) -> None:
    # R$ 61.000,00 is above the 2024 limit (59.906,02) and below the 2025 one (62.725,59).
    purchase = contratacao(value_homologated=61_000.0, published_at=published)
    assert bool(run("over_limit", dataset([purchase])).findings) is expected


def test_inciso_from_name_then_code_and_obras_limit() -> None:
    obra = contratacao(
        value_homologated=100_000.0, amparo_name="Lei 14.133/2021, Art. 75, I", amparo_code=None
    )
    by_code = contratacao(value_homologated=100_000.0, amparo_name=None, amparo_code=19)
    result = run("over_limit", dataset([obra, by_code]))

    assert flagged(result) == {by_code["control_number"]}  # 100.000 < 125.451,15 (inciso I, 2025)


def test_other_incisos_and_modalidades_are_not_in_the_population() -> None:
    emergency = contratacao(value_homologated=900_000.0, amparo_name="Lei 14.133/2021, Art. 75, VIII")
    inexigibilidade = contratacao(
        value_homologated=900_000.0, modalidade_id=9, amparo_name=None, amparo_code=None
    )
    pregao = contratacao(value_homologated=900_000.0, modalidade_id=6)
    result = run("over_limit", dataset([emergency, inexigibilidade, pregao]))

    assert result.findings == []
    assert result.skipped == 0


def test_consorcio_limit_is_doubled_and_cited() -> None:
    purchase = contratacao(value_homologated=100_000.0, buyer_name="CONSÓRCIO INTERMUNICIPAL DE SAÚDE")
    listed = contratacao(value_homologated=130_000.0, buyer_cnpj="60701190000104")
    result = run("over_limit", dataset([purchase, listed]), doubled_cnpjs=["60701190000104"])

    assert flagged(result) == {listed["control_number"]}
    assert result.findings[0].evidence["limit"] == 125_451.18
    assert "c/c §2º" in result.findings[0].message


def test_missing_value_or_unknown_year_is_skipped_and_counted() -> None:
    no_value = contratacao(value_homologated=None, value_estimated=None)
    old = contratacao(value_homologated=90_000.0, published_at=datetime(2019, 5, 1), year=2019)
    result = run("over_limit", dataset([no_value, old]))

    assert result.findings == []
    assert result.skipped == 2


def test_contrato_above_the_limit_of_an_unflagged_dispensa() -> None:
    purchase, contract = award(value_homologated=40_000.0, c_value_global=80_000.0)
    result = run("over_limit", awards_dataset([(purchase, contract)]))

    assert flagged(result) == {contract["control_number"]}
    finding = result.findings[0]
    assert finding.message.startswith("Contrato de dispensa com valor global de R$ 80.000,00 acima do limite")
    assert finding.evidence["purchase"] == purchase["control_number"]
    assert finding.evidence["link"].startswith("https://pncp.gov.br/app/contratos/")


def test_contrato_of_a_flagged_dispensa_is_not_flagged_twice() -> None:
    pair = award(value_homologated=80_000.0, c_value_global=80_000.0)
    assert flagged(run("over_limit", awards_dataset([pair]))) == {pair[0]["control_number"]}


def test_revoked_or_annulled_dispensas_are_left_out() -> None:
    revoked = contratacao(value_homologated=90_000.0, situation_id=2)
    annulled = contratacao(value_homologated=90_000.0, situation_id=3)
    suspended = contratacao(value_homologated=90_000.0, situation_id=4)
    result = run("over_limit", dataset([revoked, annulled, suspended]))

    assert flagged(result) == {suspended["control_number"]}
