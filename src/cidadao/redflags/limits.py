"""Value limits of dispensa by value (Lei 14.133/2021, art. 75, I and II), as data.

The table lives in `data/limits.csv` (one row per year: inciso I limit, inciso II limit, the act that
set them); add a row each January when the yearly decree is published (art. 182). A year missing from
the table has no limit: indicators skip its records and count them rather than guess.

Inciso I covers obras, serviços de engenharia and manutenção de veículos automotores; inciso II all
other services and purchases. The inciso is read from `amparoLegal.nome` ("Lei 14.133/2021, Art. 75,
II"); when the name is missing the code is used: PNCP amparoLegal codes 18 = art. 75, I; 19 = art. 75,
II; 38 = art. 75, VIII (emergency), per the domain table "Amparo Legal" of the PNCP consultation manual.

Art. 75 §2 doubles both limits for consórcios públicos and agências executivas. A consórcio público is
identified by its buyer name (normalised text containing "consorcio"); agências executivas are a legal
qualification not visible in the record, so they are listed by CNPJ in the `doubled_cnpjs` parameter.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Literal

import polars as pl

from cidadao.domain.records import MODALIDADE_DISPENSA
from cidadao.redflags.objects import normalise_text

if TYPE_CHECKING:
    from cidadao.redflags.base import Dataset

Inciso = Literal["I", "II"]
AMPARO_CODES: dict[int, str] = {18: "I", 19: "II", 38: "VIII"}
CANCELLED_SITUATIONS = (2, 3)  # PNCP situacaoCompraId: 2 revogada, 3 anulada
# What the findings of the limit rules (over_limit, near_limit) read of a dispensa.
FINDING_COLUMNS = (
    "control_number",
    "value",
    "limit",
    "limit_year",
    "inciso",
    "doubled",
    "act",
    "buyer_cnpj",
    "unit_code",
    "year",
    "sequence",
)
LAW = "Lei 14.133/2021"


@dataclass(frozen=True, slots=True)
class YearLimits:
    year: int
    inciso_i: float
    inciso_ii: float
    act: str  # the law itself or the decree that updated the values


@cache
def limits_table() -> tuple[YearLimits, ...]:
    text = resources.files("cidadao.redflags").joinpath("data/limits.csv").read_text(encoding="utf-8")
    return tuple(
        YearLimits(int(row["year"]), float(row["inciso_i"]), float(row["inciso_ii"]), row["act"])
        for row in csv.DictReader(text.splitlines())
    )


def limit_for(year: int, inciso: Inciso, doubled: bool = False) -> float | None:
    """Limit in force for purchases of `year` (None when the table has no such year)."""
    for row in limits_table():
        if row.year == year:
            value = row.inciso_i if inciso == "I" else row.inciso_ii
            return round(value * 2 if doubled else value, 2)
    return None


def act_for(year: int) -> str | None:
    return next((row.act for row in limits_table() if row.year == year), None)


def limits_frame() -> pl.DataFrame:
    """year, inciso, limit, act: one row per year and inciso, for joins."""
    rows = limits_table()
    return pl.DataFrame(
        {
            "year": [row.year for row in rows for _ in (0, 1)],
            "inciso": [inciso for _ in rows for inciso in ("I", "II")],
            "limit": [value for row in rows for value in (row.inciso_i, row.inciso_ii)],
            "act": [row.act for row in rows for _ in (0, 1)],
        },
        schema={"year": pl.Int64, "inciso": pl.String, "limit": pl.Float64, "act": pl.String},
    )


INCISO_PATTERN = r"(?i)art(?:igo)?\.?\s*75\s*,?\s*(?:inciso\s*)?([ivxl]+)\b"


def _inciso_of_name(name: pl.Expr) -> pl.Expr:
    return name.str.extract(INCISO_PATTERN, 1).str.to_uppercase()


def _inciso_of_code() -> pl.Expr:
    return pl.col("amparo_code").replace_strict(AMPARO_CODES, default=None, return_dtype=pl.String)


def with_inciso(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` plus the `inciso` of art. 75 ("I", "II", "VIII", ...) of each row: from amparo_name, else from
    amparo_code; null if neither. A name that cites another article (art. 74) is authoritative: not art. 75.

    The regex runs once per distinct name; names map to their inciso by one hash lookup per row (a join back
    to the distinct names costs twice as much).
    """
    names = frame.select(pl.col("amparo_name").unique().drop_nulls())
    incisos = names.select(_inciso_of_name(pl.col("amparo_name"))).to_series()
    name = pl.col("amparo_name")
    by_name = name.replace_strict(names.to_series(), incisos, default=None, return_dtype=pl.String)
    return frame.with_columns(
        pl.when(name.is_not_null()).then(by_name).otherwise(_inciso_of_code()).alias("inciso")
    )


def doubled_lookup(buyer_names: pl.Series, doubled_cnpjs: list[str]) -> pl.Expr:
    """Art. 75 §2 over buyer_name and buyer_cnpj: consórcio público by name, agência executiva by listed CNPJ.

    `buyer_names`, the distinct names of the rows, get the text work once each; a row then needs a set
    lookup."""
    consorcios = buyer_names.to_frame("buyer_name").filter(
        normalise_text(pl.col("buyer_name")).str.contains(r"\bconsorcio").fill_null(False)
    )
    by_name = pl.col("buyer_name").is_in(consorcios["buyer_name"].implode()).fill_null(False)
    return by_name | pl.col("buyer_cnpj").is_in(doubled_cnpjs).fill_null(False)


def legal_citation(inciso: str, act: str, doubled: bool = False) -> str:
    """`Lei 14.133/2021, art. 75, II; Decreto 12.343/2024` (the act only when it is a decree)."""
    base = f"{LAW}, art. 75, {inciso}" + (", c/c §2º" if doubled else "")
    return base if act == LAW else f"{base}; {act}"


def legal_citation_expr() -> pl.Expr:
    """`legal_citation` of the inciso, act and doubled columns, as an expression."""
    return pl.concat_str(
        pl.lit(f"{LAW}, art. 75, "),
        pl.col("inciso"),
        pl.when(pl.col("doubled")).then(pl.lit(", c/c §2º")).otherwise(pl.lit("")),
        pl.when(pl.col("act") == LAW).then(pl.lit("")).otherwise(pl.lit("; ") + pl.col("act")),
    )


def reference_year() -> pl.Expr:
    """Year whose limits apply to a contratação: of its PNCP publication, else its anoCompra."""
    return pl.coalesce(pl.col("published_at").dt.year().cast(pl.Int64), pl.col("year"))


def _limit_tables() -> tuple[int, pl.Series, pl.Series]:
    """First year of the table, the limits (rounded as the rules compare them) at `4 * (year - first) +
    2 * (inciso II) + doubled`, and the acts at `year - first`; null for a year missing from the table."""
    rows = {row.year: row for row in limits_table()}
    first = min(rows, default=0)
    years = [rows.get(year) for year in range(first, max(rows, default=-1) + 1)]
    values: list[float | None] = []
    for row in years:
        for value in (None, None) if row is None else (row.inciso_i, row.inciso_ii):
            values.extend((None, None) if value is None else (value, value * 2))
    # Doubled in floating point and then rounded by polars, exactly as the limit was computed in a frame.
    limits = pl.Series(values, dtype=pl.Float64()).round(2)
    acts = pl.Series([None if row is None else row.act for row in years], dtype=pl.String())
    return first, limits, acts


def dispensa_limits(contratacoes: pl.DataFrame, doubled_cnpjs: list[str]) -> pl.DataFrame:
    """Dispensas by value (modalidade 8, art. 75 I or II): `contratacao_row` (their position in
    `contratacoes`), inciso, doubled, limit_year, limit and act.

    `limit` and `act` are null when the table has no row for the year (or the year is unknown). Revoked or
    annulled dispensas (PNCP situacaoCompraId 2 and 3) spent nothing and are left out.

    The text work (inciso of the amparo name, consórcio in the buyer name) runs once per distinct name; each
    row then needs one hash lookup per name column; the inciso travels as a small code, and limit and act are
    picked from arrays by position. Both queries run on the in-memory engine, faster than the default
    streaming one on this shape (~36 against ~50 ms for 350k dispensas).
    """
    live = pl.col("situation_id").is_null() | ~pl.col("situation_id").is_in(CANCELLED_SITUATIONS)
    dispensas = (
        contratacoes.lazy()
        .with_row_index("contratacao_row")
        .filter(((pl.col("modalidade_id") == MODALIDADE_DISPENSA) & live).fill_null(False))
    )
    distinct = dispensas.select(
        pl.col("amparo_name").unique().drop_nulls().implode(),
        pl.col("buyer_name").unique().drop_nulls().implode(),
    ).collect(engine="in-memory")
    names = pl.DataFrame({"amparo_name": distinct.item(0, "amparo_name")}, schema={"amparo_name": pl.String})
    # Inciso code: 1 = I, 2 = II, 0 = another inciso or none cited (a name citing another article counts).
    codes = {"I": 1, "II": 2}
    name_codes = [
        codes.get(inciso, 0) for inciso in names.select(_inciso_of_name(pl.col("amparo_name")))[:, 0]
    ]
    name = pl.col("amparo_name")
    by_name = name.replace_strict(names["amparo_name"], name_codes, default=0, return_dtype=pl.Int64)
    by_code = pl.col("amparo_code").replace_strict(
        {code: codes.get(inciso, 0) for code, inciso in AMPARO_CODES.items()},
        default=0,
        return_dtype=pl.Int64,
    )
    first, limits, acts = _limit_tables()
    code, year = pl.col("code"), pl.col("limit_year")
    offset = pl.when(year.is_between(first, first + acts.len() - 1)).then(year - first)
    return (
        dispensas.select(
            "contratacao_row",
            pl.when(name.is_not_null()).then(by_name).otherwise(by_code).fill_null(0).alias("code"),
            doubled_lookup(distinct["buyer_name"].explode(), doubled_cnpjs).alias("doubled"),
            reference_year().alias("limit_year"),
        )
        .filter(code > 0)
        .select(
            "contratacao_row",
            pl.when(code == 1).then(pl.lit("I")).otherwise(pl.lit("II")).alias("inciso"),
            "doubled",
            "limit_year",
            pl.lit(limits)
            .gather(offset * 4 + (code - 1) * 2 + pl.col("doubled").cast(pl.Int64))
            .alias("limit"),
            pl.lit(acts).gather(offset).alias("act"),
        )
        .collect(engine="in-memory")
    )


def dispensas_by_value(
    data: Dataset, doubled_cnpjs: Sequence[str], columns: Sequence[str], subset: pl.Series | None = None
) -> pl.DataFrame:
    """`columns` (record columns and those of `dispensa_limits`) of the dataset's dispensas by value.

    The limits are computed once per dataset and `doubled_cnpjs` and shared by the rules; each rule filters
    only the record columns it reads (all ~40 of them cost more than the limits), with a mask: polars filters
    columns several times faster than it gathers rows by index. `subset`, a mask over the rows this returns
    without it, keeps only those rows: a rule can decide on a few columns which rows it needs and then copy
    the rest of its columns for those rows only.
    """
    cnpjs = list(doubled_cnpjs)
    limits = data.derived(("dispensas_by_value", *cnpjs), lambda: dispensa_limits(data.contratacoes, cnpjs))
    if subset is not None:
        limits = limits.filter(subset)
    contratacoes = data.contratacoes
    keep = pl.zeros(contratacoes.height, pl.Boolean(), eager=True).scatter(limits["contratacao_row"], True)
    records = contratacoes.select(name for name in columns if name not in limits.columns).filter(keep)
    return records.with_columns(limits).select(columns)
