"""Build the analysis Dataset from polars frames, domain Records, or raw PNCP JSON.

All paths end in `conform`, which gives every record frame exactly the RECORD_SCHEMA columns and types, so
indicators see the same frame whether records come from files, the API or the `records` table.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from cidadao.domain.records import RECORD_COLUMNS, Record, RecordKind
from cidadao.redflags.base import (
    RECORD_SCHEMA,
    SANCTIONS_SCHEMA,
    Dataset,
    empty_records,
    empty_sanctions,
)

# Naive local times in the frame; timestamps read with a zone (PostgreSQL timestamptz) are converted to this.
LOCAL_ZONE = "America/Sao_Paulo"


def _conform_column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    if name not in frame.columns:
        return pl.lit(None, dtype=dtype).alias(name)
    column = pl.col(name)
    current = frame.schema[name]
    if isinstance(dtype, pl.Datetime) and isinstance(current, pl.Datetime) and current.time_zone:
        column = column.dt.convert_time_zone(LOCAL_ZONE).dt.replace_time_zone(None)
    elif isinstance(dtype, pl.Date) and isinstance(current, pl.Datetime):
        column = column.dt.date()
    return column.cast(dtype).alias(name)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType] = RECORD_SCHEMA) -> pl.DataFrame:
    """`frame` with exactly the columns of `schema`, in order and typed (missing columns become null)."""
    return frame.select(_conform_column(frame, name, dtype) for name, dtype in schema.items())


def dataset_from_frames(
    contratacoes: pl.DataFrame | None,
    contratos: pl.DataFrame | None,
    sanctions: pl.DataFrame | None = None,
) -> Dataset:
    """Dataset from frames with RECORD_COLUMNS names (e.g. read from the `records` table)."""
    return Dataset(
        contratacoes=conform(contratacoes) if contratacoes is not None else empty_records(),
        contratos=conform(contratos) if contratos is not None else empty_records(),
        sanctions=conform(sanctions, SANCTIONS_SCHEMA) if sanctions is not None else empty_sanctions(),
    )


def dataset_from_table(records: pl.DataFrame, sanctions: pl.DataFrame | None = None) -> Dataset:
    """Dataset from one frame of both kinds, split by its `kind` column."""
    kind = pl.col("kind")
    return dataset_from_frames(
        records.filter(kind == RecordKind.CONTRATACAO.value),
        records.filter(kind == RecordKind.CONTRATO.value),
        sanctions,
    )


def records_frame(records: Iterable[Record]) -> pl.DataFrame:
    """Typed frame of domain Records (Decimal money becomes float)."""
    rows: dict[str, list[object]] = {name: [] for name in RECORD_COLUMNS}
    for record in records:
        for name in RECORD_COLUMNS:
            value = getattr(record, name)
            rows[name].append(float(value) if name.startswith("value_") and value is not None else value)
    return pl.DataFrame(rows, schema=RECORD_SCHEMA, strict=False)


def dataset_from_records(records: Iterable[Record], sanctions: pl.DataFrame | None = None) -> Dataset:
    """Dataset from domain Records of both kinds."""
    return dataset_from_table(records_frame(records), sanctions)
