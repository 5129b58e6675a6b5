"""Portuguese formatting of the numbers that go into finding messages, and evidence helpers."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from cidadao.domain.records import RecordKind, pncp_link


def _to_cents(value: float) -> int:
    # Half-up as a person rounds 62725.585 (to ,59): the float 6272558.4999... is nudged by a relative
    # epsilon far below a cent and far above the float's representation error.
    scaled = abs(float(value)) * 100
    rounded = math.floor(scaled + 0.5 + scaled * 1e-15)
    return -rounded if value < 0 else rounded


def cents(value: float) -> float:
    """Money rounded to cents, as evidence stores it."""
    return _to_cents(value) / 100


def money(value: float) -> str:
    """`R$ 130.000,00` (Brazilian grouping and decimal comma)."""
    amount = _to_cents(value)
    units, hundredths = divmod(abs(amount), 100)
    return f"{'-' if amount < 0 else ''}R$ {units:,}".replace(",", ".") + f",{hundredths:02d}"


def percent(ratio: float, digits: int = 1) -> str:
    """`12,5 %` from 0.125."""
    return f"{ratio * 100:.{digits}f}".replace(".", ",") + " %"


def number(value: float, digits: int = 0) -> str:
    """`1.234` or `3,57` (digits after the comma)."""
    return f"{value:,.{digits}f}".replace(",", "_").replace(".", ",").replace("_", ".")


def day(value: date | datetime) -> str:
    """`31/12/2025`."""
    return value.strftime("%d/%m/%Y")


def link(kind: RecordKind | str, cnpj: Any, year: Any, sequence: Any) -> str | None:
    """PNCP page of a record, or None when a part of its id is missing."""
    if not cnpj or year is None or sequence is None:
        return None
    return pncp_link(RecordKind(kind), str(cnpj), int(year), int(sequence))


def iso(value: date | datetime | None) -> str | None:
    """Dates in evidence are ISO strings (JSON-serialisable)."""
    return value.isoformat() if value is not None else None


def document(ni: str | None) -> str:
    """A CNPJ as 11.222.333/0001-81; a CPF masked as the Portal da Transparência shows it (***.222.333-**)."""
    if not ni:
        return "(não informado)"
    if len(ni) == 14:
        return f"{ni[:2]}.{ni[2:5]}.{ni[5:8]}/{ni[8:12]}-{ni[12:]}"
    if len(ni) == 11 and ni.isdigit():
        return f"***.{ni[3:6]}.{ni[6:9]}-**"
    return ni
