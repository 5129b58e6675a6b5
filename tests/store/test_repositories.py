from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select, update

from cidadao.domain.records import Finding, Record, RecordKind, Rejection, Severity
from cidadao.store import repositories
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.models import (
    BuyerRow,
    FindingRow,
    IngestionRunRow,
    QuarantineRow,
    RecordRow,
    SupplierRow,
)
from cidadao.store.repositories import (
    add_run_counts,
    finish_run,
    get_watermark,
    quarantine,
    save_findings,
    save_watermark,
    start_run,
    upsert_records,
)

UPDATED = datetime(2025, 1, 2, 8, 30)


def make_record(number: int, updated: datetime = UPDATED, **overrides: Any) -> Record:
    raw = {
        "numeroControlePNCP": f"06140404000167-1-{number:06d}/2025",
        "dataAtualizacao": updated.isoformat(),
        "objetoCompra": f"Aquisição de material de expediente, lote {number}",
        **overrides.pop("raw_extra", {}),
    }
    fields: dict[str, Any] = {
        "kind": RecordKind.CONTRATACAO,
        "control_number": raw["numeroControlePNCP"],
        "raw": raw,
        "content_hash": hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        "buyer_cnpj": "06140404000167",
        "buyer_name": "MUNICIPIO DE FORTUNA",
        "sphere": "M",
        "power": "N",
        "uf": "MA",
        "year": 2025,
        "sequence": number,
        "modalidade_id": 8,
        "object": raw["objetoCompra"],
        "value_estimated": Decimal("15000.50"),
        "published_at": updated,
        "source_updated_at": updated,
        "signed_at": date(2025, 1, 2),
    }
    fields.update(overrides)
    return Record(**fields)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def test_upsert_inserts_then_skips_unchanged_then_updates_changed(engine: Engine) -> None:
    records = [make_record(n) for n in range(1, 6)]
    with transaction(engine) as session:
        first = upsert_records(session, records, "file")
    assert sorted(first.inserted) == sorted(r.control_number for r in records)
    assert (first.updated, first.unchanged) == ([], 0)

    with transaction(engine) as session:
        session.execute(RecordRow.__table__.update().values(needs_analysis=False))
        again = upsert_records(session, records, "file")
    assert (again.inserted, again.updated, again.unchanged) == ([], [], 5)

    changed = make_record(3, updated=UPDATED + timedelta(hours=1))
    with transaction(engine) as session:
        result = upsert_records(session, [records[0], changed], "pncp")
    assert (result.inserted, result.updated, result.unchanged) == ([], [changed.control_number], 1)

    with engine.connect() as connection:
        rows = connection.execute(
            select(RecordRow.control_number, RecordRow.needs_analysis, RecordRow.source, RecordRow.raw)
        ).all()
    assert len(rows) == 5
    flagged = {row.control_number: row for row in rows if row.needs_analysis}
    assert list(flagged) == [changed.control_number]
    assert flagged[changed.control_number].source == "pncp"
    assert flagged[changed.control_number].raw == changed.raw


def test_older_version_never_overwrites_newer_data(engine: Engine) -> None:
    newer = make_record(1, updated=UPDATED + timedelta(days=1))
    with transaction(engine) as session:
        upsert_records(session, [newer], "pncp")
    with transaction(engine) as session:
        result = upsert_records(session, [make_record(1)], "file")
    assert (result.inserted, result.updated, result.unchanged) == ([], [], 1)
    with engine.connect() as connection:
        assert connection.scalar(select(RecordRow.source_updated_at)) == newer.source_updated_at


@pytest.mark.parametrize("newer_first", [False, True])
def test_duplicates_inside_one_batch_keep_the_newest_version(engine: Engine, newer_first: bool) -> None:
    newer = make_record(7, updated=UPDATED + timedelta(minutes=5))
    batch = [newer, make_record(7)] if newer_first else [make_record(7), newer]
    with transaction(engine) as session:
        result = upsert_records(session, batch, "file")
    assert (result.inserted, result.unchanged) == ([newer.control_number], 1)
    with engine.connect() as connection:
        assert connection.scalar(select(RecordRow.content_hash)) == newer.content_hash


def party_stamps(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        buyers = connection.execute(select(BuyerRow.cnpj, BuyerRow.updated_at)).all()
        suppliers = connection.execute(select(SupplierRow.supplier_id, SupplierRow.updated_at)).all()
    return [*buyers, *suppliers]


def test_typed_columns_and_parties_are_stored(engine: Engine) -> None:
    contrato = make_record(
        9,
        kind=RecordKind.CONTRATO,
        supplier_id="00656468000139",
        supplier_name="SOMA/PR COMERCIO DE PRODUTOS HOSPITALARES LTDA",
        supplier_type="PJ",
        supplier_id_valid=True,
        value_global=Decimal("294.00"),
        warnings=["CNPJ do fornecedor com dígitos verificadores inválidos"],
    )
    with transaction(engine) as session:
        upsert_records(session, [make_record(8), contrato], "file")
        # Stamps far in the past, so a rewrite shows even where now() has one-second resolution (SQLite).
        for table in (BuyerRow, SupplierRow):
            session.execute(update(table).values(updated_at=datetime(2000, 1, 1, tzinfo=UTC)))
    parties_written = party_stamps(engine)
    with transaction(engine) as session:
        # A later record without a buyer name must not blank the known one, nor rewrite it at all.
        upsert_records(session, [make_record(10, buyer_name=None)], "file")
    assert party_stamps(engine) == parties_written
    with engine.connect() as connection:
        row = connection.execute(select(RecordRow).where(RecordRow.kind == "contrato")).one()
        buyers = connection.execute(select(BuyerRow.cnpj, BuyerRow.name)).all()
        suppliers = connection.execute(select(SupplierRow.supplier_id, SupplierRow.id_valid)).all()
    assert row.value_global == Decimal("294.00")
    assert row.signed_at == date(2025, 1, 2)
    assert row.published_at == UPDATED
    assert row.warnings == contrato.warnings
    assert buyers == [("06140404000167", "MUNICIPIO DE FORTUNA")]
    assert suppliers == [("00656468000139", True)]
    with transaction(engine) as session:
        upsert_records(session, [make_record(11, buyer_name="MUNICÍPIO DE FORTUNA")], "file")
    with engine.connect() as connection:
        assert connection.execute(select(BuyerRow.name)).scalars().all() == ["MUNICÍPIO DE FORTUNA"]


def test_runs_quarantine_and_watermarks(engine: Engine) -> None:
    with transaction(engine) as session:
        run_id = start_run(session, "file")
        stored = quarantine(
            session,
            [
                Rejection("sem numeroControlePNCP", {"objetoCompra": "x"}),
                Rejection("JSON inválido", '{"numeroControlePNCP": "1-', control_number=None),
            ],
            "file",
            run_id,
        )
        add_run_counts(session, run_id, fetched=3, ingested=1, quarantined=stored)
        add_run_counts(session, run_id, fetched=1, unchanged=1)
        finish_run(session, run_id, "failed", error="boom")
        save_watermark(session, "pncp:contratacoes", UPDATED, {"page": 3})
    with transaction(engine) as session:
        save_watermark(session, "pncp:contratacoes", UPDATED + timedelta(days=1), None)
    with transaction(engine) as session:
        mark = get_watermark(session, "pncp:contratacoes")
        assert mark is not None
        assert (mark.position, mark.cursor) == (UPDATED + timedelta(days=1), None)
        assert get_watermark(session, "other") is None
        run = session.get_one(IngestionRunRow, run_id)
        assert (run.fetched, run.ingested, run.unchanged, run.quarantined) == (4, 1, 1, 2)
        assert (run.status, run.error) == ("failed", "boom")
        assert run.finished_at is not None
        payloads = session.scalars(select(QuarantineRow.payload).order_by(QuarantineRow.id)).all()
    assert payloads == ['{"objetoCompra":"x"}', '{"numeroControlePNCP": "1-']


def test_save_findings_returns_only_new_ids_and_denormalises(engine: Engine) -> None:
    contrato = make_record(
        4, kind=RecordKind.CONTRATO, supplier_id="00656468000139", value_global=Decimal("99.90")
    )
    with transaction(engine) as session:
        upsert_records(session, [contrato], "file")
        run_id = start_run(session, "pncp")

    def finding(rule: str, version: str = "1") -> Finding:
        return Finding(
            rule=rule,
            rule_version=version,
            record=contrato.control_number,
            severity=Severity.HIGH,
            score=0.8,
            message="Dispensa de R$ 99,90 acima do limite.",
            evidence={"limite": "50000.00"},
            legal_basis="Lei 14.133/2021, Art. 75, II",
        )

    with transaction(engine) as session:
        first = save_findings(session, [finding("a"), finding("b")], run_id)
    with transaction(engine) as session:
        second = save_findings(session, [finding("a"), finding("b"), finding("a", "2")], run_id)
    assert len(first) == 2
    assert len(second) == 1
    assert not set(first) & set(second)
    assert count(engine, FindingRow) == 3
    with engine.connect() as connection:
        row = connection.execute(select(FindingRow).where(FindingRow.id == second[0])).one()
    assert (row.rule, row.rule_version, row.status) == ("a", "2", "new")
    assert (row.buyer_cnpj, row.supplier_id, row.uf, row.value) == (
        "06140404000167",
        "00656468000139",
        "MA",
        Decimal("99.90"),
    )
    assert row.evidence == {"limite": "50000.00"}


@pytest.mark.postgres
def test_a_record_stored_concurrently_after_the_lookup_falls_back_to_the_upsert(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(pg_url)
    engine = engine_for(pg_url)
    with transaction(engine) as session:
        upsert_records(session, [make_record(1)], "pncp")
    # As if another writer stored record 1 between our lookup and our COPY.
    monkeypatch.setattr(repositories, "_stored_versions", lambda _session, _numbers: {})
    changed = make_record(1, updated=UPDATED + timedelta(hours=2))
    with transaction(engine) as session:
        result = upsert_records(session, [changed, make_record(2)], "pncp")
    assert (result.inserted, result.updated) == ([make_record(2).control_number], [changed.control_number])
    assert count(engine, RecordRow) == 2
    engine.dispose()
