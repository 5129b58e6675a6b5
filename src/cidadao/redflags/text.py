"""Portuguese formatting of the numbers that go into finding messages, and evidence helpers."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import polars as pl

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


# --- the same formatting as polars expressions, for findings built column-wise ----------------------------


def cents_int_expr(value: pl.Expr) -> pl.Expr:
    """Money in integer cents, rounded half-up exactly as `_to_cents` does (same float operations)."""
    scaled = value.cast(pl.Float64).abs() * 100
    rounded = ((scaled + 0.5) + scaled * 1e-15).floor().cast(pl.Int64)
    return pl.when(value < 0).then(-rounded).otherwise(rounded)


def cents_expr(value: pl.Expr) -> pl.Expr:
    """`cents` as an expression: money rounded to cents (float), equal to `cents` bit for bit.

    Polars divides by a scalar as a multiplication by its reciprocal (62725.590000000004 instead of
    62725.59), so the divisor is a column of 100.0, which polars divides element by element as Python does.
    """
    amount = cents_int_expr(value)
    return amount.cast(pl.Float64) / (amount * 0 + 100).cast(pl.Float64)


_HUNDREDTHS = pl.Series([f"{hundredths:02d}" for hundredths in range(100)], dtype=pl.String())
_THOUSANDS = pl.Series([f"{group:03d}" for group in range(1000)], dtype=pl.String())


def money_expr(value: pl.Expr) -> pl.Expr:
    """`money` as an expression: `R$ 130.000,00`.

    The units are written as all six groups of three digits an Int64 of cents can hold (each group picked
    from a table of "000".."999"), joined by dots and stripped of the leading zeros and dots: several times
    cheaper than a regex inserting the dots, and ~20 % cheaper than cutting the units' decimal text into
    groups. Lazy queries compute the shared parts once (common subexpressions), so prefer them to eager
    selects.
    """
    amount = cents_int_expr(value)
    units = amount.abs() // 100  # an Int64 of cents holds under 10**17 units
    grouped = pl.concat_str(
        [pl.lit(_THOUSANDS).gather(units // 1000**power % 1000) for power in range(5, -1, -1)], separator="."
    )
    return pl.concat_str(
        pl.when(amount < 0).then(pl.lit("-R$ ")).otherwise(pl.lit("R$ ")),
        pl.when(units == 0).then(pl.lit("0")).otherwise(grouped.str.strip_chars_start("0.")),
        pl.lit(","),
        pl.lit(_HUNDREDTHS).gather(amount.abs() % 100),
    )


def day_expr(value: pl.Expr) -> pl.Expr:
    """`day` as an expression: `31/12/2025`."""
    return value.dt.strftime("%d/%m/%Y")


def iso_expr(value: pl.Expr) -> pl.Expr:
    """`iso` of a datetime column: `2025-12-31T10:00:00`, with microseconds only when there are any."""
    plain = value.dt.strftime("%Y-%m-%dT%H:%M:%S")
    return (
        pl.when(value.dt.microsecond() == 0).then(plain).otherwise(value.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
    )


def link_expr(kind: RecordKind | str, cnpj: pl.Expr, year: pl.Expr, sequence: pl.Expr) -> pl.Expr:
    """`link` as an expression: the PNCP page, null when a part of the id is missing."""
    section = "editais" if RecordKind(kind) is RecordKind.CONTRATACAO else "contratos"
    text = pl.concat_str(
        pl.lit(f"https://pncp.gov.br/app/{section}/"), cnpj, pl.lit("/"), year, pl.lit("/"), sequence
    )
    return pl.when(cnpj.is_not_null() & (cnpj != "") & year.is_not_null() & sequence.is_not_null()).then(text)
