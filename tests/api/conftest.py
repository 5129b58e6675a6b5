"""API fixtures: an app over a migrated database seeded with records and findings, and credentials."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert

from cidadao.api.app import create_app
from cidadao.api.auth import create_api_key, issue_token
from cidadao.config import Settings, load_settings
from cidadao.store.db import engine_for, upgrade
from cidadao.store.models import FindingRow, RecordRow

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # starlette would prefer httpx2; httpx works the same here
    from starlette.testclient import TestClient

RULES = ("fracionamento", "valor_atipico", "fornecedor_sancionado", "concentracao_fornecedor")
SEVERITIES = ("low", "medium", "high", "critical")
UFS = ("SP", "RJ", "MG", "BA", "PE")
BUYERS = ("00394460000141", "46395000000139", "29979036000140")
SUPPLIERS = ("11222333000181", "12345678000195", "52998224725")


def record_row(n: int, *, purchase: str | None = None) -> dict[str, Any]:
    buyer = BUYERS[n % len(BUYERS)]
    control = f"{buyer}-{2 if purchase else 1}-{n:06d}/2025"
    return {
        "kind": "contrato" if purchase else "contratacao",
        "control_number": control,
        "purchase_control_number": purchase,
        "buyer_cnpj": buyer,
        "buyer_name": f"Prefeitura Municipal {n % len(BUYERS)}",
        "uf": UFS[n % len(UFS)],
        "municipality": "São Paulo",
        "year": 2025,
        "sequence": n + 1,
        "modalidade_id": 8 if n % 2 else 9,
        "modalidade_name": "Dispensa" if n % 2 else "Inexigibilidade",
        "amparo_name": "Lei 14.133/2021, Art. 75, II",
        "object": f"Aquisição de material {n}",
        "value_estimated": Decimal("1000.50") * (n + 1),
        "value_global": Decimal("990.00") * (n + 1) if purchase else None,
        "published_at": datetime(2025, 1, 1, 10) + timedelta(days=n),
        "supplier_id": SUPPLIERS[n % len(SUPPLIERS)] if purchase else None,
        "supplier_name": "Fornecedor Ltda" if purchase else None,
        "content_hash": f"{n:064d}",
        "raw": {"numeroControlePNCP": control, "n": n},
        "source": "pncp",
    }


def finding_row(n: int, record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return {
        "record": record["control_number"],
        "rule": RULES[n % len(RULES)],
        "rule_version": "1",
        "severity": SEVERITIES[n % len(SEVERITIES)],
        "score": round(rng.random(), 3),
        "message": f"Contratação {n} com valor R$ {n * 1000:,} acima do limite.",
        "evidence": {"value": n * 1000, "limit": 59906.02},
        "legal_basis": "Lei 14.133/2021, art. 75, II",
        "status": "new",
        "buyer_cnpj": record["buyer_cnpj"],
        "supplier_id": record["supplier_id"],
        "uf": record["uf"],
        "value": record["value_estimated"],
        "created_at": datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=n),
        "updated_at": datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=n),
    }


def seed(engine: Engine, count: int = 60, seed_value: int = 7) -> list[dict[str, Any]]:
    """`count` contratações, a contrato each, one finding per contrato (rules and severities cycle)."""
    rng = random.Random(seed_value)
    purchases = [record_row(n) for n in range(count)]
    contratos = [record_row(n, purchase=p["control_number"]) for n, p in enumerate(purchases)]
    findings = [finding_row(n, contrato, rng) for n, contrato in enumerate(contratos)]
    with engine.begin() as connection:
        connection.execute(insert(RecordRow), purchases + contratos)
        connection.execute(insert(FindingRow), findings)
    return findings


def make_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "rate_limit_per_minute": 100_000,
        "api_list_cache_seconds": 0,  # tests see every write at once; test_list_cache covers the cache
        "jwt_secret_key": "test-jwt-secret-of-at-least-32-bytes!",
        **overrides,
    }
    return load_settings(**values)


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    upgrade(sqlite_url)
    return make_settings(sqlite_url)


@pytest.fixture
def seeded(settings: Settings) -> list[dict[str, Any]]:
    return seed(engine_for(settings.effective_database_url))


@pytest.fixture
def app(settings: Settings, seeded: list[dict[str, Any]]) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def writer_token(settings: Settings) -> str:
    return issue_token(settings, "editor@example.org", ["read", "write"])


@pytest.fixture
def reader_key(settings: Settings) -> str:
    return create_api_key(engine_for(settings.effective_database_url), settings, "leitor", ["read"])[1]
