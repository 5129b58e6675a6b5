"""The versioned alert payload (see docs/alerts.md): what the outbox stores and every channel renders.

A payload is a snapshot taken when the alert is enqueued, so a later edit of the finding or record does not
change what was (or will be) sent, and delivery needs no database reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cidadao.domain.records import RecordKind, Severity, pncp_link
from cidadao.store.models import FindingRow, RecordRow

SCHEMA_VERSION = "1"
LOCAL_TZ = ZoneInfo("America/Sao_Paulo")

SEVERITY_LABELS = {"low": "baixa", "medium": "média", "high": "alta", "critical": "crítica"}  # a severidade
RISK_LABELS = {"low": "baixo", "medium": "médio", "high": "alto", "critical": "crítico"}  # o risco
SEVERITY_COLOURS = {"critical": 0xDC3545, "high": 0xFD7E14, "medium": 0xFFC107, "low": 0x28A745}

# numeroControlePNCP: CNPJ-<1 contratação | 2 contrato>-sequence/year
_CONTROL_NUMBER = re.compile(r"^(\d{14})-([12])-(\d+)/(\d{4})$")


def utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def severity_rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        return 0


def record_link(finding: FindingRow, record: RecordRow | None) -> str | None:
    if record is not None and record.buyer_cnpj and record.year and record.sequence:
        return pncp_link(RecordKind(record.kind), record.buyer_cnpj, record.year, record.sequence)
    match = _CONTROL_NUMBER.match(finding.record)
    if match is None:
        return None
    cnpj, kind, sequence, year = match.groups()
    record_kind = RecordKind.CONTRATACAO if kind == "1" else RecordKind.CONTRATO
    return pncp_link(record_kind, cnpj, int(year), int(sequence))


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def finding_view(finding: FindingRow, record: RecordRow | None) -> dict[str, Any]:
    value = finding.value
    if value is None and record is not None:
        value = record.value_homologated or record.value_global or record.value_estimated
    return {
        "id": finding.id,
        "rule": finding.rule,
        "rule_version": finding.rule_version,
        "severity": finding.severity,
        "score": finding.score,
        "message": finding.message,
        "legal_basis": finding.legal_basis,
        "evidence": finding.evidence,
        "created_at": utc(finding.created_at).isoformat() if finding.created_at else None,
        "record": finding.record,
        "link": record_link(finding, record),
        "buyer_cnpj": finding.buyer_cnpj or (record.buyer_cnpj if record else None),
        "buyer_name": record.buyer_name if record else None,
        "uf": finding.uf or (record.uf if record else None),
        "municipality": record.municipality if record else None,
        "supplier_id": finding.supplier_id or (record.supplier_id if record else None),
        "supplier_name": record.supplier_name if record else None,
        "value": _decimal(value),
        "object": record.object if record else None,
    }


def envelope(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Standard Webhooks style body: type, timestamp, data."""
    return {
        "version": SCHEMA_VERSION,
        "type": kind,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data,
    }


def finding_payload(view: dict[str, Any]) -> dict[str, Any]:
    return envelope("finding.created", {"finding": view})


def group_payload(views: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(views, key=lambda v: (-severity_rank(v["severity"]), -float(v["score"]), v["id"]))
    first = ordered[0]
    return envelope(
        "findings.grouped",
        {
            "buyer": {"cnpj": first["buyer_cnpj"], "name": first["buyer_name"], "uf": first["uf"]},
            "count": len(ordered),
            "max_severity": first["severity"],
            "finding_ids": sorted(v["id"] for v in ordered),
            "findings": ordered,
        },
    )


def max_severity(payload: dict[str, Any]) -> str:
    data = payload["data"]
    if payload["type"] == "finding.created":
        return str(data["finding"]["severity"])
    if payload["type"] == "findings.grouped":
        return str(data["max_severity"])
    return str(data.get("max_severity") or "low")


def brl(value: str | Decimal | float | None) -> str:
    """R$ 1.234.567,89"""
    if value is None:
        return "—"
    text = f"{Decimal(str(value)):,.2f}"
    return "R$ " + text.replace(",", "_").replace(".", ",").replace("_", ".")


def score_text(value: float) -> str:
    """0,93 (decimal comma, as every number a Brazilian reader sees)."""
    return f"{float(value):.2f}".replace(".", ",")


def local_time(iso: str | None) -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")
