from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest

from cidadao.domain.records import Record, RecordKind
from cidadao.redflags.base import RECORD_SCHEMA
from cidadao.redflags.frame import (
    dataset_from_frames,
    dataset_from_ndjson,
    dataset_from_raw,
    dataset_from_records,
    frame_from_raw,
    split_kinds,
    split_ndjson,
)
from cidadao.redflags.objects import classify
from cidadao.redflags.text import (
    cents,
    cents_expr,
    day_expr,
    document,
    iso,
    iso_expr,
    link,
    link_expr,
    money,
    money_expr,
    percent,
)
from cidadao.sources.generator import write_jsonl

CONTRATACAO = {
    "numeroControlePNCP": "00394460000141-1-000001/2025",
    "anoCompra": 2025,
    "sequencialCompra": 1,
    "modalidadeId": 8,
    "orgaoEntidade": {"cnpj": "00.394.460/0001-41", "razaoSocial": "MUNICIPIO", "esferaId": "M"},
    "unidadeOrgao": {"codigoUnidade": 1, "ufSigla": "SP"},
    "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
    "objetoCompra": "Aquisição de combustível para os veículos da Secretaria de Saúde",
    "valorTotalEstimado": 70000.5,
    "valorTotalHomologado": None,
    "dataPublicacaoPncp": "2025-01-02T10:00:00",
    "dataAberturaProposta": "2025-01-02T08:00:00",
    "dataEncerramentoProposta": "2025-01-03T08:00:00.123",
}
CONTRATO = {
    "numeroControlePNCP": "00394460000141-2-000001/2025",
    "numeroControlePncpCompra": "00394460000141-1-000001/2025",
    "anoContrato": 2025,
    "sequencialContrato": 1,
    "orgaoEntidade": {"cnpj": "00394460000141"},
    "niFornecedor": "11.222.333/0001-81",
    "tipoPessoa": "PJ",
    "objetoContrato": "Fornecimento de combustível",
    "valorInicial": 100,
    "valorGlobal": "130.5",
    "dataAssinatura": "2025-01-05T00:00:00",
    "dataVigenciaInicio": "2025-01-05",
    "dataVigenciaFim": "2026-01-05",
}


def test_raw_records_become_typed_columns() -> None:
    frame = frame_from_raw([CONTRATACAO, CONTRATO, {"numeroControlePNCP": "x", "foo": 1}])

    assert frame.schema["value_global"] == pl.Float64
    rows = frame.to_dicts()
    assert [row["kind"] for row in rows] == ["contratacao", "contrato", None]
    purchase, contract = rows[0], rows[1]
    assert purchase["buyer_cnpj"] == "00394460000141"
    assert purchase["unit_code"] == "1"
    assert purchase["value_estimated"] == 70000.5
    assert purchase["proposal_close_at"] == datetime(2025, 1, 3, 8, 0)
    assert contract["supplier_id"] == "11222333000181"
    assert contract["supplier_id_valid"] is True
    assert contract["value_global"] == 130.5
    assert contract["signed_at"] == date(2025, 1, 5)


def test_wrong_types_become_null_instead_of_failing() -> None:
    broken = {**CONTRATACAO, "valorTotalEstimado": "muito", "anoCompra": True, "unidadeOrgao": "x"}
    row = frame_from_raw([broken]).row(0, named=True)

    assert row["value_estimated"] is None
    assert row["year"] is None
    assert row["unit_code"] is None


def test_ndjson_fast_path_equals_the_tolerant_path(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    write_jsonl(path, 300, 3)
    tolerant = split_kinds([frame_from_raw(orjson.loads(line) for line in path.read_bytes().splitlines())])

    for chunk_bytes in (64, 4096, 32 << 20):  # chunks smaller than a line still cut at line ends; many; one
        fast = split_ndjson(path, chunk_bytes=chunk_bytes)
        assert fast.contratacoes.equals(tolerant.contratacoes)
        assert fast.contratos.equals(tolerant.contratos)
        assert fast.contratacoes.height + fast.contratos.height == 300
    (tmp_path / "empty.jsonl").write_bytes(b"")
    empty = dataset_from_ndjson(tmp_path / "empty.jsonl")
    assert empty.contratacoes.height == empty.contratos.height == 0


def test_split_ndjson_counts_objects_of_neither_kind(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    write_jsonl(path, 40, 3)
    with path.open("ab") as stream:
        stream.write(b'{"foo": 1}\n{"numeroControlePNCP": null}\n')

    split = split_ndjson(path, chunk_bytes=2048)

    assert split.contratacoes.height + split.contratos.height == 40
    assert split.unrecognised == 2


def test_dataset_derived_columns() -> None:
    data = dataset_from_raw([CONTRATACAO, CONTRATO])

    assert data.contratacoes["value"].to_list() == [70000.5]  # no homologated value: the estimate
    assert data.contratacoes["object_class"].to_list() == ["combustivel"]
    assert data.direct_awards.height == 1
    enriched = data.contratos_enriched.row(0, named=True)
    assert (enriched["modalidade_id"], enriched["amparo_code"], enriched["purchase_found"]) == (8, 19, True)
    assert enriched["value"] == 130.5
    assert enriched["purchase_row"] == 0


def test_a_contrato_links_to_the_first_row_of_its_contratacao() -> None:
    other = {**CONTRATACAO, "numeroControlePNCP": "00394460000141-1-000099/2025"}
    orphan = {**CONTRATO, "numeroControlePncpCompra": "00394460000141-1-000777/2025"}
    data = dataset_from_raw([other, CONTRATACAO, CONTRATACAO, CONTRATO, orphan])

    enriched = data.contratos_enriched
    assert enriched["purchase_row"].to_list() == [1, None]
    assert enriched["purchase_found"].to_list() == [True, False]


def test_records_and_database_frames_give_the_same_dataset() -> None:
    record = Record(
        kind=RecordKind.CONTRATACAO,
        control_number="c1",
        raw={},
        content_hash="h",
        modalidade_id=9,
        value_estimated=Decimal("10.25"),
        published_at=datetime(2025, 3, 1, 12),
    )
    from_records = dataset_from_records([record])
    # As read from PostgreSQL: Decimal money, timestamptz.
    table = pl.DataFrame(
        {
            "kind": ["contratacao"],
            "control_number": ["c1"],
            "content_hash": ["h"],
            "modalidade_id": [9],
            "value_estimated": pl.Series([Decimal("10.25")], dtype=pl.Decimal(18, 2)),
            "published_at": pl.Series([datetime(2025, 3, 1, 15)]).dt.replace_time_zone("UTC"),
        }
    )
    from_table = dataset_from_frames(table, None)

    assert from_table.contratacoes.schema == from_records.contratacoes.schema
    assert from_table.contratacoes.equals(from_records.contratacoes)
    assert list(from_table.contratos.schema) == [*RECORD_SCHEMA, "value", "object_class"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Aquisição de MEDICAMENTOS para a Secretaria Municipal de Saúde", "medicamentos"),
        ("Reforma da Unidade Básica de Saúde", "obras_engenharia"),
        ("Combustível para veículos da frota", "combustivel"),
        ("Fornecimento de pneus para atender a Secretaria de Obras", "veiculos"),
        ("Show artístico na festa do padroeiro", "eventos"),
        ("Material de expediente", "outros"),
        (None, None),
    ],
)
def test_object_classes(text: str | None, expected: str | None) -> None:
    frame = pl.DataFrame({"object": [text]}, schema={"object": pl.String})
    assert frame.select(classify(pl.col("object")).alias("class"))["class"][0] == expected


def test_portuguese_formatting() -> None:
    assert money(130000) == "R$ 130.000,00"
    assert money(62725.585) == "R$ 62.725,59"
    assert money(-5.5) == "-R$ 5,50"
    assert money(2.675) == "R$ 2,68"  # half-up on the written value, not on the float 2.67499...
    assert money(999_999.995) == "R$ 1.000.000,00"
    assert money(1_000_000_000_000.25) == "R$ 1.000.000.000.000,25"
    assert percent(0.125) == "12,5 %"
    assert document("11222333000181") == "11.222.333/0001-81"
    assert document("52998224725") == "***.982.247-**"


def test_column_wise_formatting_equals_the_python_formatters() -> None:
    values = [130000, 62725.585, -5.5, 2.675, 999_999.995, 1_000_000_000_000.25, 0.0, 0.005, 12.3, -0.004]
    values += [999.99, 1000.0, 1000.01, 100_000.0, 999_999_999.99, 12_345_678_901_234_567.0, -1000.0]
    values += [(i * 7919.123457) % 2_000_000 - 1_000_000 for i in range(2000)]
    frame = pl.DataFrame({"value": [*values, None]}, schema={"value": pl.Float64})
    out = frame.select(money_expr(pl.col("value")).alias("money"), cents_expr(pl.col("value")).alias("cents"))
    assert out["money"].to_list() == [*(money(v) for v in values), None]
    assert out["cents"].to_list() == [*(cents(v) for v in values), None]  # bit for bit, not just close
    stamps = [datetime(2025, 1, 2, 10), datetime(2025, 1, 2, 10, 0, 0, 120), None]
    dated = pl.DataFrame({"at": stamps}).select(iso_expr(pl.col("at")), day_expr(pl.col("at")).alias("day"))
    assert dated["at"].to_list() == [iso(stamp) for stamp in stamps]
    assert dated["day"].to_list() == ["02/01/2025", "02/01/2025", None]
    ids = pl.DataFrame(
        {"cnpj": ["00394460000141", "", None, "1"], "year": [2025, 2025, 2025, None], "seq": [1, 2, 3, 4]}
    )
    links = ids.select(link_expr(RecordKind.CONTRATO, pl.col("cnpj"), pl.col("year"), pl.col("seq")))
    assert links.to_series().to_list() == [link(RecordKind.CONTRATO, *row) for row in ids.iter_rows()]


def test_timestamps_in_other_layouts_are_read() -> None:
    rows = [
        {**CONTRATACAO, "dataPublicacaoPncp": "2025-01-02 10:00:00"},
        {**CONTRATACAO, "dataPublicacaoPncp": "2025-01-03"},
        {**CONTRATACAO, "dataPublicacaoPncp": "2025-01-04T10:00:00-03:00"},
        {**CONTRATACAO, "dataPublicacaoPncp": "ontem"},
    ]
    assert frame_from_raw(rows)["published_at"].to_list() == [
        datetime(2025, 1, 2, 10),
        datetime(2025, 1, 3),
        datetime(2025, 1, 4, 10),
        None,
    ]


def test_text_columns_from_a_database_are_parsed() -> None:
    table = pl.DataFrame(
        {
            "kind": ["contrato", "contrato"],
            "control_number": ["k1", "k2"],
            "signed_at": ["2025-01-05", None],
            "published_at": ["2025-01-05 10:00:00.000000", "nunca"],
            "year": ["2025", None],
            "value_global": ["10.5", None],
        }
    )
    row = dataset_from_frames(None, table).contratos.row(0, named=True)

    assert (row["signed_at"], row["published_at"]) == (date(2025, 1, 5), datetime(2025, 1, 5, 10))
    assert (row["year"], row["value_global"]) == (2025, 10.5)
