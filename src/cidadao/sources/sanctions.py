"""Readers of the CEIS and CNEP sanction lists (Portal da Transparência) into the analysis sanctions frame.

Two layouts:
- the CSV download: semicolon-separated, Latin-1 (UTF-8 also accepted), dates dd/mm/yyyy, columns read by
  name ("CADASTRO", "CPF OU CNPJ DO SANCIONADO", "NOME DO SANCIONADO", "CATEGORIA DA SANÇÃO",
  "DATA INÍCIO SANÇÃO", "DATA FINAL SANÇÃO", "ÓRGÃO SANCIONADOR"); an empty final date means in force;
- the JSON of the API's `/ceis` and `/cnep` endpoints (a list of sanction objects). The list name comes from
  the caller, else from the file name (ceis/cnep), else CNEP when records carry `valorMulta`, else CEIS.

Ids are kept as digits only. The Portal masks CPFs (***.123.456-**); such rows cannot be matched to a
supplier and are dropped (counted by `read_sanctions_counted`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from cidadao.domain.ids import digits_only
from cidadao.redflags.base import SANCTIONS_SCHEMA

CSV_COLUMNS = {
    "sanction_list": "CADASTRO",
    "sanctioned_id": "CPF OU CNPJ DO SANCIONADO",
    "sanctioned_name": "NOME DO SANCIONADO",
    "category": "CATEGORIA DA SANÇÃO",
    "start_date": "DATA INÍCIO SANÇÃO",
    "end_date": "DATA FINAL SANÇÃO",
    "authority": "ÓRGÃO SANCIONADOR",
}
REQUIRED_CSV = ("CPF OU CNPJ DO SANCIONADO", "DATA INÍCIO SANÇÃO")
LISTS = ("CEIS", "CNEP")


class SanctionsFormatError(ValueError):
    """The file is neither the CEIS/CNEP CSV download nor the API JSON."""


def parse_date(text: Any) -> date | None:
    """dd/mm/yyyy (Portal) or yyyy-mm-dd; empty or malformed gives None."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    return None


def _clean(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Typed SANCTIONS_SCHEMA frame with unmatchable ids (masked CPFs, blanks) dropped, and their count."""
    usable = pl.col("sanctioned_id").str.len_chars().is_in([11, 14])
    kept = frame.filter(usable)
    return kept.select(
        pl.col(name).cast(dtype) for name, dtype in SANCTIONS_SCHEMA.items()
    ), frame.height - kept.height


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _from_csv(data: bytes) -> pl.DataFrame:
    raw = pl.read_csv(io.StringIO(_decode(data)), separator=";", infer_schema=False, quote_char='"')
    header = {name.strip().upper(): name for name in raw.columns}
    missing = [name for name in REQUIRED_CSV if name not in header]
    if missing:
        raise SanctionsFormatError(f"not a CEIS/CNEP CSV: missing column(s) {', '.join(missing)}")

    def column(name: str) -> pl.Expr:
        source = header.get(CSV_COLUMNS[name])
        return (pl.col(source).str.strip_chars() if source else pl.lit(None, pl.String)).alias(name)

    def day(name: str) -> pl.Expr:
        text = column(name)
        return pl.coalesce(
            text.str.to_date("%d/%m/%Y", strict=False), text.str.to_date("%Y-%m-%d", strict=False)
        ).alias(name)

    return raw.select(
        column("sanction_list").str.to_uppercase(),
        column("sanctioned_id").str.replace_all(r"\D", ""),
        column("sanctioned_name"),
        column("category"),
        column("authority"),
        day("start_date"),
        day("end_date"),
    )


def _nested(record: Mapping[str, Any], *paths: tuple[str, ...]) -> Any:
    for path in paths:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value not in (None, ""):
            return value
    return None


def sanctions_from_api(records: Iterable[Mapping[str, Any]], sanction_list: str) -> pl.DataFrame:
    """Frame of API sanction objects (`/ceis` or `/cnep` responses) of one list."""
    rows = []
    for record in records:
        ni = _nested(
            record, ("sancionado", "codigoFormatado"), ("pessoa", "cnpjFormatado"), ("pessoa", "cpfFormatado")
        )
        rows.append(
            {
                "sanction_list": sanction_list.upper(),
                "sanctioned_id": digits_only(str(ni)) if ni is not None else "",
                "sanctioned_name": _nested(record, ("sancionado", "nome"), ("pessoa", "nome")),
                "category": _nested(
                    record, ("tipoSancao", "descricaoResumida"), ("tipoSancao", "descricaoPortal")
                ),
                "authority": _nested(record, ("orgaoSancionador", "nome")),
                "start_date": parse_date(record.get("dataInicioSancao")),
                "end_date": parse_date(record.get("dataFimSancao")),
            }
        )
    return pl.DataFrame(rows, schema=SANCTIONS_SCHEMA)


def _list_name(path: Path, records: list[Any], given: str | None) -> str:
    if given:
        return given.upper()
    match = re.search(r"(ceis|cnep)", path.name, re.IGNORECASE)
    if match:
        return match.group(1).upper()
    return "CNEP" if any(isinstance(r, Mapping) and "valorMulta" in r for r in records) else "CEIS"


def read_sanctions_counted(path: str | Path, sanction_list: str | None = None) -> tuple[pl.DataFrame, int]:
    """Sanctions of a CSV download or API JSON file, and how many rows had an unmatchable id."""
    path = Path(path)
    data = path.read_bytes()
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"[", b"{"):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise SanctionsFormatError(f"{path}: invalid JSON: {error}") from None
        records = parsed.get("data", [parsed]) if isinstance(parsed, dict) else parsed
        if not isinstance(records, list):
            raise SanctionsFormatError(f"{path}: expected a list of sanctions")
        frame = sanctions_from_api(
            (r for r in records if isinstance(r, Mapping)), _list_name(path, records, sanction_list)
        )
    else:
        frame = _from_csv(data)
        if sanction_list:
            frame = frame.with_columns(pl.lit(sanction_list.upper()).alias("sanction_list"))
    return _clean(frame)


def read_sanctions(path: str | Path, sanction_list: str | None = None) -> pl.DataFrame:
    """Sanctions frame (SANCTIONS_SCHEMA) of a CEIS/CNEP CSV download or API JSON file."""
    return read_sanctions_counted(path, sanction_list)[0]
