from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson

from cidadao.domain.records import Record, RecordKind
from cidadao.sources.pncp_schema import parse_record
from cidadao.sources.replay import ReplayServer
from cidadao.sources.sample import DERIVED_NOTE, sample_contratacoes, sample_contratos

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pncp"


def _index() -> list[dict[str, Any]]:
    return list(orjson.loads((FIXTURES / "index.json").read_bytes()))


def test_recorded_responses_are_what_the_replay_server_serves_over_http() -> None:
    index = _index()
    assert len(index) == 4
    with ReplayServer([*sample_contratacoes(), *sample_contratos()]) as server:
        for entry in index:
            path = "/v1/contratacoes/publicacao" if entry["endpoint"] == "contratacoes" else "/v1/contratos"
            response = httpx.get(server.url + path, params=entry["query"])
            assert response.status_code == 200
            assert response.json() == orjson.loads((FIXTURES / entry["file"]).read_bytes()), entry["file"]


def test_recorded_pages_have_the_pncp_envelope() -> None:
    first = orjson.loads((FIXTURES / "contratacoes_publicacao_m6_p1.json").read_bytes())
    second = orjson.loads((FIXTURES / "contratacoes_publicacao_m6_p2.json").read_bytes())
    assert {
        key: first[key] for key in ("totalRegistros", "totalPaginas", "numeroPagina", "paginasRestantes")
    } == {
        "totalRegistros": 89,
        "totalPaginas": 2,
        "numeroPagina": 1,
        "paginasRestantes": 1,
    }
    assert (len(first["data"]), len(second["data"]), second["paginasRestantes"]) == (50, 39, 0)


def test_build_script_reproduces_the_fixtures(tmp_path: Path, monkeypatch: Any) -> None:
    spec = importlib.util.spec_from_file_location("build_fixtures", FIXTURES / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.build()
    for entry in _index():
        assert (tmp_path / entry["file"]).read_bytes() == (FIXTURES / entry["file"]).read_bytes()


def test_derived_contratos_link_to_real_purchases_and_validate() -> None:
    contratos = sample_contratos()
    assert len(contratos) == 49
    records = [parse_record(raw) for raw in contratos]
    assert all(isinstance(record, Record) and record.kind is RecordKind.CONTRATO for record in records)
    typed = [record for record in records if isinstance(record, Record)]
    assert all(record.supplier_id_valid for record in typed)
    assert len({record.control_number for record in typed}) == 49
    assert all(record.purchase_control_number and record.buyer_cnpj for record in typed)
    assert all(raw["informacaoComplementar"] == DERIVED_NOTE for raw in contratos)
    purchases = {raw["numeroControlePNCP"] for raw in sample_contratacoes()}
    linked = [record for record in typed if record.purchase_control_number in purchases]
    assert linked
    assert all(record.uf and record.object for record in linked)
    assert min(record.signed_at for record in typed if record.signed_at) >= date(2024, 1, 1)
