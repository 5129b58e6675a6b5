from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from cidadao.domain.records import Record, RecordKind
from cidadao.redflags.limits import limit_for
from cidadao.sources.files import read_records
from cidadao.sources.generator import PATTERN_RATES, generate, write_jsonl
from cidadao.sources.pncp_schema import parse_record
from cidadao.sources.sample import sample_contratacoes, sample_contratos

N = 20_000


@pytest.fixture(scope="module")
def generated() -> tuple[list[dict[str, Any]], dict[str, str]]:
    planted: dict[str, str] = {}
    return list(generate(N, seed=7, planted=planted)), planted


def _limit(raw: dict[str, Any]) -> float:
    inciso = "I" if raw["amparoLegal"]["codigo"] == 18 else "II"
    value = limit_for(raw["anoCompra"], inciso)
    assert value is not None
    return value


def _business_days(start: date, end: date) -> int:
    return sum(
        1 for offset in range((end - start).days) if (start + timedelta(days=offset + 1)).weekday() < 5
    )


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def digest(seed: int) -> str:
        return hashlib.sha256(b"\n".join(orjson.dumps(r) for r in generate(3_000, seed))).hexdigest()

    assert digest(1) == digest(1)
    assert digest(1) != digest(2)


def test_counts_links_and_validation(generated: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    raws, _ = generated
    assert len(raws) == N
    records = [parse_record(raw) for raw in raws]
    assert all(isinstance(record, Record) for record in records), [
        r for r in records if not isinstance(r, Record)
    ][:1]
    typed = [record for record in records if isinstance(record, Record)]
    kinds = Counter(record.kind for record in typed)
    assert 0.4 < kinds[RecordKind.CONTRATO] / N < 0.6
    assert len({record.control_number for record in typed}) == N
    seen: set[str] = set()
    for record in typed:
        if record.kind is RecordKind.CONTRATO:
            assert record.purchase_control_number in seen  # a contrato follows its contratação
        else:
            seen.add(record.control_number)
            assert record.modalidade_id in (8, 9)
            assert record.buyer_cnpj
            assert record.uf
            assert record.object
            assert record.value_estimated
    contratos = [record for record in typed if record.kind is RecordKind.CONTRATO]
    invalid = sum(1 for record in contratos if record.supplier_id_valid is False)
    assert 0.002 < invalid / len(contratos) < 0.03
    assert all(record.supplier_id_valid is not None for record in contratos)
    assert {record.supplier_type for record in contratos} == {"PJ", "PF"}
    assert all(
        date(2024, 1, 1) <= record.published_at.date() <= date(2026, 12, 31)
        for record in typed
        if record.published_at
    )
    assert Counter(record.year for record in typed if record.kind is RecordKind.CONTRATACAO).keys() == {
        2024,
        2025,
        2026,
    }


def test_real_buyers_of_the_sample_are_in_the_pool(
    generated: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    raws, _ = generated
    assert any(raw["orgaoEntidade"]["cnpj"] == "06140404000167" for raw in raws)  # Município de Fortuna (MA)


def test_honest_dispensas_by_value_stay_under_the_limit(
    generated: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    raws, planted = generated
    by_value = [
        raw
        for raw in raws
        if raw.get("amparoLegal")
        and raw["amparoLegal"]["codigo"] in (18, 19)
        and raw["numeroControlePNCP"] not in planted
    ]
    assert len(by_value) > 3_000
    assert all(raw["valorTotalEstimado"] < 0.9 * _limit(raw) for raw in by_value)


def test_planted_patterns_are_what_they_claim(generated: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    raws, planted = generated
    by_number = {raw["numeroControlePNCP"]: raw for raw in raws}
    found = defaultdict(list)
    for number, pattern in planted.items():
        found[pattern].append(by_number[number])
    assert set(found) == set(PATTERN_RATES)
    for raw in found["over_limit"]:
        assert raw["valorTotalEstimado"] > _limit(raw)
    for raw in found["near_limit"]:
        assert 0.9 * _limit(raw) <= raw["valorTotalEstimado"] < _limit(raw)
    for raw in found["short_notice"]:
        opened = datetime.fromisoformat(raw["dataAberturaProposta"]).date()
        closed = datetime.fromisoformat(raw["dataEncerramentoProposta"]).date()
        assert _business_days(opened, closed) < 3
    for raw in found["amendment_over_25pct"]:
        assert raw["valorGlobal"] > 1.5 * raw["valorInicial"]
    for raw in found["emergency_over_1y"]:
        if "dataVigenciaFim" in raw:
            term = date.fromisoformat(raw["dataVigenciaFim"]) - date.fromisoformat(raw["dataVigenciaInicio"])
            assert term.days > 365
        else:
            assert raw["amparoLegal"]["codigo"] == 38
    splits: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for raw in found["split_purchase"]:
        if "anoCompra" in raw:
            splits[
                (raw["orgaoEntidade"]["cnpj"], raw["unidadeOrgao"]["codigoUnidade"], raw["anoCompra"])
            ].append(raw)
    assert splits
    for group in splits.values():
        assert all(raw["valorTotalEstimado"] < _limit(raw) for raw in group)
        assert sum(raw["valorTotalEstimado"] for raw in group) >= _limit(group[0])
    pairs = Counter(
        (raw["orgaoEntidade"]["cnpj"], raw["objetoCompra"])
        for raw in found["duplicate"]
        if "anoCompra" in raw
    )
    assert pairs
    assert all(count >= 2 for count in pairs.values())
    december = [raw for raw in found["year_end_rush"] if "anoCompra" in raw]
    assert december
    assert all(raw["dataPublicacaoPncp"][5:10] >= "12-17" for raw in december)


def test_write_jsonl_streams_with_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    path = tmp_path / "out" / "gen.jsonl"
    assert (
        write_jsonl(
            path, 2_500, seed=3, progress=lambda done, total: calls.append((done, total)), every=1_000
        )
        == 2_500
    )
    assert calls == [(1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]
    assert list(read_records(path)) == list(generate(2_500, seed=3))
    assert path.read_bytes().endswith(b"}\n")


def test_date_range_is_configurable(tmp_path: Path) -> None:
    today = date(2026, 11, 26)
    raws = list(generate(500, seed=5, start=today, end=today))
    assert {raw["dataPublicacaoPncp"][:10] for raw in raws if "anoCompra" in raw} == {today.isoformat()}
    path = tmp_path / "today.jsonl"
    write_jsonl(path, 50, seed=5, start=today, end=today)
    assert all(isinstance(raw, dict) for raw in read_records(path))


def test_edge_sizes() -> None:
    assert list(generate(0)) == []
    assert len(list(generate(1))) == 1
    with pytest.raises(ValueError, match="negative"):
        list(generate(-1))


def test_generated_records_never_reuse_a_real_control_number() -> None:
    real = {raw["numeroControlePNCP"] for raw in [*sample_contratacoes(), *sample_contratos()]}
    generated = {raw["numeroControlePNCP"] for raw in generate(20_000, seed=1)}
    assert len(generated) == 20_000
    assert not generated & real
