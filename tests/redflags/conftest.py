"""Builders of small typed datasets for indicator tests: rows as dicts, only the fields a test cares about."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

import polars as pl
import pytest

from cidadao.domain.records import Finding
from cidadao.redflags.base import REGISTRY, Dataset, RuleResult
from cidadao.redflags.frame import dataset_from_frames

BUYER = "00394460000141"
SUPPLIER = "11222333000181"
Row = dict[str, Any]

_sequence = itertools.count(1)


def contratacao(**fields: Any) -> Row:
    """A dispensa by value of 2025 with its own sequence number; keyword arguments override any field."""
    sequence = fields.pop("sequence", next(_sequence))
    buyer = fields.get("buyer_cnpj", BUYER)
    year = fields.get("year", 2025)
    row: Row = {
        "kind": "contratacao",
        "control_number": f"{buyer}-1-{sequence:06d}/{year}",
        "buyer_cnpj": buyer,
        "buyer_name": "MUNICIPIO DE TESTE",
        "sphere": "M",
        "unit_code": "1",
        "year": year,
        "sequence": sequence,
        "modalidade_id": 8,
        "amparo_code": 19,
        "amparo_name": "Lei 14.133/2021, Art. 75, II",
        "object": "Aquisição de material de expediente",
        "value_estimated": 10_000.0,
        "value_homologated": 10_000.0,
        "published_at": datetime(year, 3, 10, 10, 0),
    }
    row.update(fields)
    return row


def contrato(purchase: Row | None = None, **fields: Any) -> Row:
    """A contrato of `purchase` (or of no known contratação) with a valid supplier CNPJ."""
    sequence = fields.pop("sequence", next(_sequence))
    buyer = fields.get("buyer_cnpj", purchase["buyer_cnpj"] if purchase else BUYER)
    year = fields.get("year", purchase["year"] if purchase else 2025)
    row: Row = {
        "kind": "contrato",
        "control_number": f"{buyer}-2-{sequence:06d}/{year}",
        "purchase_control_number": purchase["control_number"] if purchase else None,
        "buyer_cnpj": buyer,
        "buyer_name": purchase["buyer_name"] if purchase else "MUNICIPIO DE TESTE",
        "sphere": purchase["sphere"] if purchase else "M",
        "unit_code": purchase["unit_code"] if purchase else "1",
        "year": year,
        "sequence": sequence,
        "object": purchase["object"] if purchase else "Aquisição de material de expediente",
        "value_initial": purchase["value_homologated"] if purchase else 10_000.0,
        "value_global": purchase["value_homologated"] if purchase else 10_000.0,
        "signed_at": date(year, 3, 15),
        "supplier_id": SUPPLIER,
        "supplier_name": "FORNECEDOR TESTE LTDA",
        "supplier_type": "PJ",
    }
    row.update(fields)
    return row


def award(**fields: Any) -> tuple[Row, Row]:
    """A direct award: a contratação and its contrato. Fields prefixed `c_` go to the contrato only."""
    contract_fields = {key[2:]: fields.pop(key) for key in list(fields) if key.startswith("c_")}
    purchase = contratacao(**fields)
    return purchase, contrato(purchase, **contract_fields)


def dataset(contratacoes: Iterable[Row] = (), contratos: Iterable[Row] = ()) -> Dataset:
    purchases, contracts = list(contratacoes), list(contratos)
    return dataset_from_frames(
        pl.DataFrame(purchases, infer_schema_length=None) if purchases else None,
        pl.DataFrame(contracts, infer_schema_length=None) if contracts else None,
    )


def awards_dataset(pairs: Iterable[tuple[Row, Row]]) -> Dataset:
    pairs = list(pairs)
    return dataset([p for p, _ in pairs], [c for _, c in pairs])


def run(rule: str, data: Dataset, **params: Any) -> RuleResult:
    """Run one registered indicator with its defaults overridden by `params`."""
    import cidadao.redflags.indicators  # noqa: F401  (registers every indicator)

    indicator = REGISTRY[rule]
    return indicator.run(data, {**indicator.defaults, **params})


def flagged(result: RuleResult) -> set[str]:
    return {finding.record for finding in result.findings}


@pytest.fixture
def check_finding() -> Callable[[Finding], None]:
    """Invariants every finding must hold (keys, score range, Portuguese message, JSON-ready evidence)."""
    import orjson

    def check(finding: Finding) -> None:
        assert set(finding.as_dict()) == {
            "rule", "rule_version", "record", "severity", "score", "message", "evidence", "legal_basis",
        }  # fmt: skip
        assert 0.0 <= finding.score <= 1.0
        assert finding.message
        assert "\n" not in finding.message
        # One sentence: no full stop followed by a capital ("art. 75" is an abbreviation, not a stop).
        assert not re.search(r"\.\s+[A-ZÀ-Ý]", finding.message), "one sentence"
        orjson.dumps(finding.evidence)

    return check
