"""Build the analysis Dataset from polars frames, domain Records, or raw PNCP JSON.

All paths end in `conform`, which gives every record frame exactly the RECORD_SCHEMA columns and types, so
indicators see the same frame whether records come from files, the API or the `records` table.

Raw PNCP JSON is converted column-wise with the same field meaning as `sources.pncp_schema.parse_record`, but
without validating record by record: a value of the wrong type becomes null, so the indicators that need it
skip the record and count it. JSON Lines files are read by polars' native reader (about a million records
in a few seconds); other inputs go through orjson and per-field column lists.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from cidadao.domain.ids import classify_id
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
    elif isinstance(current, pl.String) and not isinstance(dtype, pl.String):
        # Text columns (e.g. SQLite dates read as text): parsed leniently, unreadable values become null.
        if isinstance(dtype, pl.Datetime):
            return _lenient_timestamp(column).alias(name)
        if isinstance(dtype, pl.Date):
            return column.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).alias(name)
        return column.str.strip_chars().cast(dtype, strict=False).alias(name)
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


# Domain column <- path in the raw PNCP JSON (contratação and contrato fields share columns where they mean
# the same thing: year, sequence, object).
RAW_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "control_number": (("numeroControlePNCP",),),
    "purchase_control_number": (("numeroControlePncpCompra",),),
    "buyer_cnpj": (("orgaoEntidade", "cnpj"),),
    "buyer_name": (("orgaoEntidade", "razaoSocial"),),
    "sphere": (("orgaoEntidade", "esferaId"),),
    "power": (("orgaoEntidade", "poderId"),),
    "unit_code": (("unidadeOrgao", "codigoUnidade"),),
    "unit_name": (("unidadeOrgao", "nomeUnidade"),),
    "uf": (("unidadeOrgao", "ufSigla"),),
    "municipality": (("unidadeOrgao", "municipioNome"),),
    "ibge_code": (("unidadeOrgao", "codigoIbge"), ("unidadeOrgao", "codigoIBGE")),
    "year": (("anoCompra",), ("anoContrato",)),
    "sequence": (("sequencialCompra",), ("sequencialContrato",)),
    "modalidade_id": (("modalidadeId",),),
    "modalidade_name": (("modalidadeNome",),),
    "amparo_code": (("amparoLegal", "codigo"),),
    "amparo_name": (("amparoLegal", "nome"),),
    "situation_id": (("situacaoCompraId",),),
    "object": (("objetoCompra",), ("objetoContrato",)),
    "value_estimated": (("valorTotalEstimado",),),
    "value_homologated": (("valorTotalHomologado",),),
    "value_initial": (("valorInicial",),),
    "value_global": (("valorGlobal",),),
    "published_at": (("dataPublicacaoPncp",),),
    "source_updated_at": (("dataAtualizacao",),),
    "proposal_open_at": (("dataAberturaProposta",),),
    "proposal_close_at": (("dataEncerramentoProposta",),),
    "signed_at": (("dataAssinatura",),),
    "term_start": (("dataVigenciaInicio",),),
    "term_end": (("dataVigenciaFim",),),
    "supplier_id": (("niFornecedor",),),
    "supplier_name": (("nomeRazaoSocialFornecedor",),),
    "supplier_type": (("tipoPessoa",),),
}
# Fields only one kind has (as in pncp_schema.detect_kind): a record with any contrato field is a contrato.
CONTRATO_FIELDS = ("numeroControlePncpCompra", "niFornecedor", "anoContrato", "valorInicial", "valorGlobal")
CONTRATACAO_FIELDS = ("anoCompra", "modalidadeId", "objetoCompra", "valorTotalEstimado", "sequencialCompra")


def _raw_schema() -> dict[str, pl.DataType]:
    """Every raw leaf read as text (numbers included): typing happens once, leniently, in `_typed`."""
    top: dict[str, pl.DataType] = {}
    nested: dict[str, dict[str, pl.DataType]] = {}
    for paths in RAW_FIELDS.values():
        for path in paths:
            if len(path) == 1:
                top[path[0]] = pl.String()
            else:
                nested.setdefault(path[0], {})[path[1]] = pl.String()
    return {**top, **{name: pl.Struct(fields) for name, fields in nested.items()}}


def _flat_name(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _flatten(frame: pl.DataFrame) -> pl.DataFrame:
    """Raw frame with struct columns -> one text column per raw path."""
    columns = []
    for paths in RAW_FIELDS.values():
        for path in paths:
            expr = pl.col(path[0]) if len(path) == 1 else pl.col(path[0]).struct.field(path[1])
            columns.append(expr.alias(_flat_name(path)))
    return frame.select(columns)


TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _timestamp(expr: pl.Expr) -> pl.Expr:
    # PNCP times are naive Brasília time; a trailing zone or fraction is dropped.
    return expr.str.slice(0, 19).str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")


def _lenient_timestamp(expr: pl.Expr) -> pl.Expr:
    """Also "YYYY-MM-DD HH:MM:SS" and bare dates (midnight); slower, used only when the first pass missed."""
    text = expr.str.replace(" ", "T", literal=True).str.slice(0, 19)
    text = pl.when(text.str.len_bytes() == 10).then(text + "T00:00:00").otherwise(text)
    return text.str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")


def _supplier_validity(frame: pl.DataFrame) -> pl.Series:
    """supplier_id_valid as parse_record sets it, computed once per distinct (id, person type)."""
    pairs = frame.select("supplier_id", "supplier_type").unique()
    flags = []
    for ni, person in pairs.iter_rows():
        valid: bool | None = None
        if ni is not None:
            kind, checked = classify_id(ni)
            if person != "PE" and kind in ("cnpj", "cpf"):
                valid = checked
            elif person in ("PJ", "PF"):
                valid = False
        flags.append(valid)
    lookup = pairs.with_columns(pl.Series("supplier_id_valid", flags, dtype=pl.Boolean))
    joined = frame.select("supplier_id", "supplier_type").join(
        lookup, on=["supplier_id", "supplier_type"], how="left", nulls_equal=True, maintain_order="left"
    )
    return joined["supplier_id_valid"]


def _typed(flat: pl.DataFrame) -> pl.DataFrame:
    """Flat text columns of raw paths -> RECORD_SCHEMA columns plus `kind`; untypeable values become null."""

    def first(column: str) -> pl.Expr:
        return pl.coalesce([pl.col(_flat_name(path)) for path in RAW_FIELDS[column]])

    is_contrato = pl.any_horizontal(pl.col(name).is_not_null() for name in CONTRATO_FIELDS)
    is_contratacao = pl.any_horizontal(pl.col(name).is_not_null() for name in CONTRATACAO_FIELDS)
    columns: list[pl.Expr] = [
        pl.when(is_contrato)
        .then(pl.lit(RecordKind.CONTRATO.value))
        .when(is_contratacao)
        .then(pl.lit(RecordKind.CONTRATACAO.value))
        .alias("kind")
    ]
    for name, dtype in RECORD_SCHEMA.items():
        if name in ("kind", "content_hash", "supplier_id_valid"):
            continue
        expr = first(name)
        if name in ("buyer_cnpj", "supplier_id"):
            expr = expr.str.replace_all(r"[^0-9A-Za-z]", "").str.to_uppercase()
        if isinstance(dtype, pl.Datetime):
            expr = _timestamp(expr)
        elif isinstance(dtype, pl.Date):
            expr = expr.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        elif isinstance(dtype, pl.String):
            expr = pl.when(expr.str.len_bytes() > 0).then(expr)  # "" is absent, as in parse_record
        else:
            expr = expr.str.strip_chars().cast(dtype, strict=False)
        columns.append(expr.alias(name))
    typed = flat.select(columns)
    for name, dtype in RECORD_SCHEMA.items():
        if isinstance(dtype, pl.Datetime):
            texts = flat.select(first(name).alias(name))
            if typed[name].null_count() > texts[name].null_count():
                typed = typed.with_columns(texts.select(_lenient_timestamp(pl.col(name))))
    return typed.with_columns(_supplier_validity(typed), pl.lit(None, dtype=pl.String).alias("content_hash"))


def frame_from_raw(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Typed frame (both kinds, `kind` column) of raw PNCP records; unrecognised records get a null kind."""
    lists: dict[str, list[str | None]] = {
        _flat_name(path): [] for paths in RAW_FIELDS.values() for path in paths
    }
    for record in records:
        for paths in RAW_FIELDS.values():
            for path in paths:
                value: Any = record.get(path[0])
                if len(path) == 2:
                    value = value.get(path[1]) if isinstance(value, Mapping) else None
                lists[_flat_name(path)].append(_text(value))
    return _typed(pl.DataFrame(lists, schema=dict.fromkeys(lists, pl.String())))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _line_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file in pieces of about `size` bytes, each ending at a line end."""
    with path.open("rb") as stream:
        rest = b""
        while block := stream.read(size):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                rest = block
                continue
            rest = block[cut:]
            yield block[:cut]
        if rest.strip():
            yield rest


def _typed_chunks(path: str | Path, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    schema = _raw_schema()
    for chunk in _line_chunks(Path(path), chunk_bytes):
        yield _typed(_flatten(pl.read_ndjson(io.BytesIO(chunk), schema=schema)))


class KindFrames(NamedTuple):
    """Typed records of one source split by kind, and how many rows were neither kind."""

    contratacoes: pl.DataFrame
    contratos: pl.DataFrame
    unrecognised: int


def split_kinds(frames: Iterable[pl.DataFrame]) -> KindFrames:
    """Typed frames (e.g. chunks of a file) split by kind one by one, so memory never holds a whole typed
    table next to its two halves (at a million records that pair is about 0.7 GiB above the halves)."""
    kind = pl.col("kind")
    contratacoes: list[pl.DataFrame] = []
    contratos: list[pl.DataFrame] = []
    unrecognised = 0
    for typed in frames:
        contratacoes.append(typed.filter(kind == RecordKind.CONTRATACAO.value))
        contratos.append(typed.filter(kind == RecordKind.CONTRATO.value))
        unrecognised += typed.height - contratacoes[-1].height - contratos[-1].height
    if not contratacoes:
        empty = frame_from_raw([])
        return KindFrames(empty, empty, 0)
    return KindFrames(
        pl.concat(contratacoes, rechunk=False), pl.concat(contratos, rechunk=False), unrecognised
    )


def split_ndjson(path: str | Path, chunk_bytes: int = 32 << 20) -> KindFrames:
    """Typed records of a JSON Lines file of raw PNCP records, read natively by polars, split by kind.

    Read in chunks of about `chunk_bytes`, each typed and split before the next is parsed, so memory holds
    the typed columns plus one chunk of raw text rather than the whole raw file (parsing a chunk takes several
    times its size, so 32 MiB chunks peak about 200 MiB lower than 128 MiB ones at the same speed). Raises
    polars.exceptions.PolarsError when polars cannot read it (a line that is not JSON, a nested field that
    is not an object); callers fall back to a tolerant reader (`frame_from_raw`).
    """
    return split_kinds(_typed_chunks(path, chunk_bytes))


def dataset_from_ndjson(
    path: str | Path, sanctions: pl.DataFrame | None = None, chunk_bytes: int = 32 << 20
) -> Dataset:
    """Dataset of a JSON Lines file of raw PNCP records (see split_ndjson)."""
    split = split_ndjson(path, chunk_bytes)
    return dataset_from_frames(split.contratacoes, split.contratos, sanctions)


def dataset_from_raw(records: Iterable[Mapping[str, Any]], sanctions: pl.DataFrame | None = None) -> Dataset:
    """Dataset from raw PNCP dicts (contratações and contratos mixed, told apart by their fields)."""
    return dataset_from_table(frame_from_raw(records), sanctions)
