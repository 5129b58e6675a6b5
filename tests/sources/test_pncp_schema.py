from __future__ import annotations

import copy
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cidadao.data import sample_paths
from cidadao.domain.records import RECORD_COLUMNS, Record, RecordKind, Rejection
from cidadao.sources.files import read_records
from cidadao.sources.pncp_schema import content_hash, detect_kind, parse_record, parse_records

CONTRATACAO: dict[str, Any] = {
    "numeroControlePNCP": "06140404000167-1-000067/2024",
    "anoCompra": 2024,
    "sequencialCompra": 67,
    "modalidadeId": 8,
    "modalidadeNome": "Dispensa",
    "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II", "descricao": "valor"},
    "orgaoEntidade": {
        "cnpj": "06140404000167",
        "razaoSocial": "MUNICIPIO DE FORTUNA",
        "poderId": "N",
        "esferaId": "M",
    },
    "unidadeOrgao": {
        "codigoUnidade": "1",
        "nomeUnidade": "Prefeitura Municipal de Fortuna",
        "ufSigla": "MA",
        "municipioNome": "Fortuna",
        "codigoIbge": "2104206",
    },
    "objetoCompra": "Aquisição de material de expediente",
    "valorTotalEstimado": 58900.5,
    "valorTotalHomologado": None,
    "dataPublicacaoPncp": "2025-01-02T01:45:56",
    "dataAtualizacao": "2025-01-03T10:00:00",
    "dataAberturaProposta": "2025-01-02T08:00:00",
    "dataEncerramentoProposta": "2025-01-06T18:00:00",
    "situacaoCompraId": 1,
    "srp": False,
}

CONTRATO: dict[str, Any] = {
    "numeroControlePNCP": "06140404000167-2-000012/2025",
    "numeroControlePncpCompra": "06140404000167-1-000067/2024",
    "anoContrato": 2025,
    "sequencialContrato": 12,
    "orgaoEntidade": CONTRATACAO["orgaoEntidade"],
    "unidadeOrgao": {
        **{key: value for key, value in CONTRATACAO["unidadeOrgao"].items() if key != "codigoIbge"},
        "codigoIBGE": "2104206",
    },
    "tipoContrato": {"id": 1, "nome": "Contrato (termo inicial)"},
    "niFornecedor": "00656468000139",
    "tipoPessoa": "PJ",
    "nomeRazaoSocialFornecedor": "SOMA/PR COMERCIO DE PRODUTOS HOSPITALARES LTDA",
    "objetoContrato": "Aquisição de material de expediente",
    "valorInicial": "58000.00",
    "valorGlobal": 58000,
    "dataAssinatura": "2025-01-10",
    "dataVigenciaInicio": "2025-01-10",
    "dataVigenciaFim": "2025-12-31T00:00:00",
    "dataPublicacaoPncp": "2025-01-11T09:00:00",
    "dataAtualizacao": "2025-01-11T09:00:00",
}


def _record(raw: Any, kind: RecordKind | None = None) -> Record:
    result = parse_record(raw, kind)
    assert isinstance(result, Record), result
    return result


def _rejection(raw: Any) -> Rejection:
    result = parse_record(raw)
    assert isinstance(result, Rejection), result
    return result


def test_contratacao_fills_every_typed_column() -> None:
    record = _record(CONTRATACAO)
    assert record.kind is RecordKind.CONTRATACAO
    assert (record.buyer_cnpj, record.sphere, record.power, record.uf) == ("06140404000167", "M", "N", "MA")
    assert (record.unit_code, record.ibge_code, record.municipality) == ("1", "2104206", "Fortuna")
    assert (record.year, record.sequence, record.modalidade_id, record.situation_id) == (2024, 67, 8, 1)
    assert (record.amparo_code, record.amparo_name) == (19, "Lei 14.133/2021, Art. 75, II")
    assert record.value_estimated == Decimal("58900.5")
    assert record.value_homologated is None
    assert record.published_at == datetime(2025, 1, 2, 1, 45, 56)
    assert record.proposal_close_at == datetime(2025, 1, 6, 18)
    assert record.raw is CONTRATACAO
    assert record.warnings == []
    assert set(RECORD_COLUMNS) <= set(Record.__dataclass_fields__)


def test_contrato_fills_supplier_and_dates() -> None:
    record = _record(CONTRATO)
    assert record.kind is RecordKind.CONTRATO
    assert record.purchase_control_number == "06140404000167-1-000067/2024"
    assert (record.supplier_id, record.supplier_type, record.supplier_id_valid) == (
        "00656468000139",
        "PJ",
        True,
    )
    assert record.value_initial == Decimal("58000.00")
    assert record.value_global == Decimal(58000)
    assert (record.signed_at, record.term_end) == (date(2025, 1, 10), date(2025, 12, 31))
    assert record.ibge_code == "2104206"  # the contratos layout spells it codigoIBGE
    assert record.modalidade_id is None


def test_content_hash_ignores_key_order_but_not_values() -> None:
    reordered = dict(reversed(list(CONTRATACAO.items())))
    assert _record(reordered).content_hash == _record(CONTRATACAO).content_hash == content_hash(CONTRATACAO)
    changed = {**CONTRATACAO, "dataAtualizacao": "2025-01-04T10:00:00"}
    assert _record(changed).content_hash != _record(CONTRATACAO).content_hash


def test_bad_check_digits_are_kept_and_marked() -> None:
    record = _record({**CONTRATO, "niFornecedor": "00656468000138"})
    assert record.supplier_id_valid is False
    assert "niFornecedor" in record.warnings[0]
    cpf = _record({**CONTRATO, "niFornecedor": "529.982.247-25", "tipoPessoa": "PF"})
    assert (cpf.supplier_id, cpf.supplier_id_valid) == ("52998224725", True)
    foreign = _record({**CONTRATO, "niFornecedor": "X99", "tipoPessoa": "PE"})
    assert foreign.supplier_id_valid is None
    assert foreign.warnings == []


def test_invalid_buyer_cnpj_is_a_warning() -> None:
    raw = copy.deepcopy(CONTRATACAO)
    raw["orgaoEntidade"]["cnpj"] = "06140404000160"
    assert "orgaoEntidade.cnpj" in _record(raw).warnings[0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"numeroControlePNCP": None}, "numeroControlePNCP"),
        ({"numeroControlePNCP": ""}, "numeroControlePNCP"),
        ({"valorTotalEstimado": "12,5 mil"}, "valorTotalEstimado"),
        ({"valorTotalEstimado": True}, "valorTotalEstimado"),
        ({"valorTotalEstimado": "NaN"}, "valorTotalEstimado"),
        ({"dataPublicacaoPncp": "2025-02-30T10:00:00"}, "dataPublicacaoPncp"),
        ({"dataAberturaProposta": "0201-01-05T10:00:00"}, "dataAberturaProposta"),
        ({"orgaoEntidade": "MUNICIPIO"}, "orgaoEntidade"),
        ({"anoCompra": "dois mil"}, "anoCompra"),
        ({"objetoCompra": ["a", "b"]}, "objetoCompra"),
        ({"valorTotalHomologado": {"valor": 1}}, "valorTotalHomologado"),
        ({"amparoLegal": {"codigo": "II"}}, "amparoLegal.codigo"),
    ],
)
def test_unusable_records_are_rejected_naming_the_field(change: dict[str, Any], reason: str) -> None:
    rejection = _rejection({**CONTRATACAO, **change})
    assert reason in rejection.reason
    assert rejection.raw["anoCompra"] == CONTRATACAO["anoCompra"] or "anoCompra" in change


def test_missing_control_number_and_non_objects_are_rejected() -> None:
    without = {key: value for key, value in CONTRATO.items() if key != "numeroControlePNCP"}
    assert "numeroControlePNCP" in _rejection(without).reason
    assert "not a JSON object" in _rejection([1, 2]).reason
    assert "contratação from a contrato" in _rejection({"numeroControlePNCP": "x"}).reason
    assert "dataAssinatura" in _rejection({**CONTRATO, "dataAssinatura": "2025-13-01"}).reason


def test_kind_detection_and_explicit_kind() -> None:
    assert detect_kind(CONTRATO) is RecordKind.CONTRATO
    assert detect_kind(CONTRATACAO) is RecordKind.CONTRATACAO
    assert _record({"numeroControlePNCP": "x-1"}, RecordKind.CONTRATACAO).control_number == "x-1"


def test_blank_strings_read_as_null() -> None:
    blanks = {"valorTotalHomologado": "", "dataAberturaProposta": "", "anoCompra": "", "objetoCompra": ""}
    record = _record({**CONTRATACAO, **blanks})
    assert (record.value_homologated, record.proposal_open_at, record.year, record.object) == (
        None,
        None,
        None,
        None,
    )
    assert _record({**CONTRATACAO, "valorTotalEstimado": 0}).value_estimated == 0
    contrato = _record({**CONTRATO, "dataVigenciaFim": "", "dataAssinatura": "2025-01-10T15:30:00"})
    assert (contrato.term_end, contrato.signed_at) == (None, date(2025, 1, 10))


def test_timezone_aware_times_are_brought_to_brasilia() -> None:
    record = _record({**CONTRATACAO, "dataPublicacaoPncp": "2025-01-02T12:00:00Z"})
    assert record.published_at == datetime(2025, 1, 2, 9)


def test_real_sample_parses_without_rejections() -> None:
    results = list(parse_records(read_records(sample_paths().contratacoes)))
    records = [result for result in results if isinstance(result, Record)]
    assert len(records) == len(results) == 89
    assert {record.modalidade_id for record in records} == {6}
    assert len({record.buyer_cnpj for record in records}) == 64
    assert all(record.supplier_id_valid is None and record.value_estimated is not None for record in records)
    assert all(not record.warnings for record in records)


def test_parse_records_passes_reader_rejections_through() -> None:
    upstream = Rejection("line 3: invalid JSON", "{")
    assert next(iter(parse_records([upstream, CONTRATO]))) is upstream


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
_FIELDS = st.sampled_from(
    [*CONTRATACAO, *CONTRATO, "orgaoEntidade", "unidadeOrgao", "amparoLegal", "codigoIBGE", "tipoPessoa"]
)


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from([CONTRATACAO, CONTRATO]), changes=st.dictionaries(_FIELDS, _ANY_JSON, max_size=4))
def test_any_mutation_gives_a_record_or_a_rejection_never_an_exception(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    raw = {**base, **changes}
    result = parse_record(raw)
    assert isinstance(result, Record | Rejection)
    if isinstance(result, Rejection):
        assert result.reason
        assert result.raw is raw
    else:
        assert result.content_hash == content_hash(raw)


@settings(max_examples=100, deadline=None)
@given(_ANY_JSON)
def test_arbitrary_json_never_raises(value: Any) -> None:
    assert isinstance(parse_record(value), Record | Rejection)
