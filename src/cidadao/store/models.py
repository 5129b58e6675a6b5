"""SQLAlchemy 2 models. Every change here needs an Alembic revision under store/migrations."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# A record's raw PNCP JSON is stored verbatim as `json` (checked, not converted to JSONB's binary form): it
# is only ever read back whole, and JSONB's conversion was a third of PostgreSQL's cost of storing a record.
RawJSON = JSON()
# SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(18, 2)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return func.now()


class RecordRow(Base):
    """A contratação or contrato: raw JSON verbatim plus the typed columns analysis needs."""

    __tablename__ = "records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    control_number: Mapped[str] = mapped_column(String(64), unique=True)
    purchase_control_number: Mapped[str | None] = mapped_column(String(64), index=True)
    buyer_cnpj: Mapped[str | None] = mapped_column(String(14))
    buyer_name: Mapped[str | None] = mapped_column(Text)
    sphere: Mapped[str | None] = mapped_column(String(1))
    power: Mapped[str | None] = mapped_column(String(1))
    unit_code: Mapped[str | None] = mapped_column(String(32))
    unit_name: Mapped[str | None] = mapped_column(Text)
    uf: Mapped[str | None] = mapped_column(String(2))
    municipality: Mapped[str | None] = mapped_column(Text)
    ibge_code: Mapped[str | None] = mapped_column(String(7))
    year: Mapped[int | None] = mapped_column(Integer)
    sequence: Mapped[int | None] = mapped_column(Integer)
    modalidade_id: Mapped[int | None] = mapped_column(Integer)
    modalidade_name: Mapped[str | None] = mapped_column(Text)
    amparo_code: Mapped[int | None] = mapped_column(Integer)
    amparo_name: Mapped[str | None] = mapped_column(Text)
    situation_id: Mapped[int | None] = mapped_column(Integer)
    object: Mapped[str | None] = mapped_column(Text)
    value_estimated: Mapped[Decimal | None] = mapped_column(Money)
    value_homologated: Mapped[Decimal | None] = mapped_column(Money)
    value_initial: Mapped[Decimal | None] = mapped_column(Money)
    value_global: Mapped[Decimal | None] = mapped_column(Money)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    proposal_open_at: Mapped[datetime | None] = mapped_column(DateTime)
    proposal_close_at: Mapped[datetime | None] = mapped_column(DateTime)
    signed_at: Mapped[date | None] = mapped_column(Date)
    term_start: Mapped[date | None] = mapped_column(Date)
    term_end: Mapped[date | None] = mapped_column(Date)
    supplier_id: Mapped[str | None] = mapped_column(String(32), index=True)
    supplier_name: Mapped[str | None] = mapped_column(Text)
    supplier_type: Mapped[str | None] = mapped_column(String(2))
    supplier_id_valid: Mapped[bool | None] = mapped_column(Boolean)
    warnings: Mapped[list[str] | None] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[dict[str, Any]] = mapped_column(RawJSON)
    source: Mapped[str] = mapped_column(String(32))
    needs_analysis: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    last_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())

    # Each index costs every ingested row, so only columns that queries filter on have one: control number
    # (upsert, API), purchase control number (related records), supplier and buyer-year (entity pages, peer
    # groups), needs_analysis (the monitor). Nothing filters records by uf or published_at.
    __table_args__ = (
        Index("ix_records_buyer_year", "buyer_cnpj", "year"),
        Index("ix_records_needs_analysis", "needs_analysis"),
    )


class BuyerRow(Base):
    __tablename__ = "buyers"

    cnpj: Mapped[str] = mapped_column(String(14), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    sphere: Mapped[str | None] = mapped_column(String(1))
    power: Mapped[str | None] = mapped_column(String(1))
    uf: Mapped[str | None] = mapped_column(String(2))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class SupplierRow(Base):
    __tablename__ = "suppliers"

    supplier_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    supplier_type: Mapped[str | None] = mapped_column(String(2))
    id_valid: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class IngestionRunRow(Base):
    __tablename__ = "ingestion_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime)
    window_end: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    ingested: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[int] = mapped_column(Integer, default=0)
    alerts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WatermarkRow(Base):
    """How far a source has been fetched; a crash resumes from here and re-fetches idempotently."""

    __tablename__ = "watermarks"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[datetime] = mapped_column(DateTime)  # end of the last fully ingested window
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # progress inside the current window
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class QuarantineRow(Base):
    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("ingestion_runs.id", ondelete="SET NULL"), index=True
    )
    source: Mapped[str] = mapped_column(String(64))
    control_number: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # verbatim, even when it is not valid JSON
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now(), index=True)


class FindingRow(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    record: Mapped[str] = mapped_column(String(64))  # records.control_number
    rule: Mapped[str] = mapped_column(String(48))
    rule_version: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new", server_default="new")
    # Denormalised from the record so the API filters without joins.
    buyer_cnpj: Mapped[str | None] = mapped_column(String(14))
    supplier_id: Mapped[str | None] = mapped_column(String(32))
    uf: Mapped[str | None] = mapped_column(String(2))
    value: Mapped[Decimal | None] = mapped_column(Money)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("ingestion_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())

    __table_args__ = (
        UniqueConstraint("record", "rule", "rule_version"),
        Index("ix_findings_severity_id", "severity", "id"),
        Index("ix_findings_rule_id", "rule", "id"),
        Index("ix_findings_created_at", "created_at"),
        Index("ix_findings_buyer_cnpj", "buyer_cnpj"),
        Index("ix_findings_supplier_id", "supplier_id"),
    )


class FindingEventRow(Base):
    """Triage audit log: who changed a finding's status, when, and why."""

    __tablename__ = "finding_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class AlertOutboxRow(Base):
    """One alert per (finding, channel), written in the same transaction as its finding."""

    __tablename__ = "alert_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)  # travels as webhook-id
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(64))  # e.g. discord:1a2b3c, webhook:4d5e6f, email
    kind: Mapped[str] = mapped_column(String(16), default="finding")  # finding | group | digest | system
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|held|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("finding_id", "channel"),
        Index("ix_alert_outbox_status_next", "status", "next_attempt_at"),
    )


class JobRunRow(Base):
    """One row per periodic job and time window: two beats firing still give one run."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("job", "window_start"),)


class HeartbeatRow(Base):
    __tablename__ = "heartbeats"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)  # worker@host, beat, ...
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class SanctionRow(Base):
    """CEIS/CNEP sanctions (Portal da Transparência), context for `sanctioned_supplier`."""

    __tablename__ = "sanctions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sanction_list: Mapped[str] = mapped_column(String(8))  # CEIS | CNEP
    sanctioned_id: Mapped[str] = mapped_column(String(32), index=True)
    sanctioned_name: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    authority: Mapped[str | None] = mapped_column(Text)
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    source_key: Mapped[str] = mapped_column(String(128), unique=True)  # stable id for idempotent refresh
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # shown to identify a key, not secret
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSONType)  # read | write | admin
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InvestigationRow(Base):
    __tablename__ = "investigations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target_kind: Mapped[str] = mapped_column(String(16))  # buyer | supplier | window
    target: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed
    requested_by: Mapped[str] = mapped_column(String(128))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
