"""The contract between the engine and every indicator: the analysis Dataset, results and the registry.

Indicators are pure: they read whole polars frames and return findings; nothing here does I/O.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, TypeVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, RECORD_COLUMNS, Finding, Severity
from cidadao.redflags.objects import with_object_class

# Polars type of every domain column; Decimal money becomes Float64 (analysis rounds to cents).
_DATETIME = pl.Datetime("us")
_COLUMN_TYPES: dict[str, pl.DataType] = {
    "year": pl.Int64(),
    "sequence": pl.Int64(),
    "modalidade_id": pl.Int64(),
    "amparo_code": pl.Int64(),
    "situation_id": pl.Int64(),
    "value_estimated": pl.Float64(),
    "value_homologated": pl.Float64(),
    "value_initial": pl.Float64(),
    "value_global": pl.Float64(),
    "published_at": _DATETIME,
    "source_updated_at": _DATETIME,
    "proposal_open_at": _DATETIME,
    "proposal_close_at": _DATETIME,
    "signed_at": pl.Date(),
    "term_start": pl.Date(),
    "term_end": pl.Date(),
    "supplier_id_valid": pl.Boolean(),
}
RECORD_SCHEMA: dict[str, pl.DataType] = {
    name: _COLUMN_TYPES.get(name, pl.String()) for name in RECORD_COLUMNS
}

SANCTIONS_SCHEMA: dict[str, pl.DataType] = {
    "sanction_list": pl.String(),  # CEIS or CNEP
    "sanctioned_id": pl.String(),  # CNPJ/CPF, digits only
    "sanctioned_name": pl.String(),
    "category": pl.String(),
    "authority": pl.String(),
    "start_date": pl.Date(),
    "end_date": pl.Date(),  # null: in force
}


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def empty_sanctions() -> pl.DataFrame:
    return pl.DataFrame(schema=SANCTIONS_SCHEMA)


@dataclass(frozen=True)
class Dataset:
    """Contratações, contratos and context tables, as typed polars frames with RECORD_COLUMNS names.

    On construction both record frames gain `object_class` (see objects.py) and `value`: for contratações the
    homologated value when positive, else the estimated one; for contratos `value_global`.
    Build one with `cidadao.redflags.frame`; the derived frames below are computed once, on first use.
    """

    contratacoes: pl.DataFrame
    contratos: pl.DataFrame
    sanctions: pl.DataFrame = field(default_factory=empty_sanctions)

    def __post_init__(self) -> None:
        contratacoes = self.contratacoes
        if "value" not in contratacoes.columns:
            homologated = pl.col("value_homologated")
            contratacoes = contratacoes.with_columns(
                pl.when(homologated > 0).then(homologated).otherwise(pl.col("value_estimated")).alias("value")
            )
        contratos = self.contratos
        if "value" not in contratos.columns:
            contratos = contratos.with_columns(pl.col("value_global").alias("value"))
        # One chunk per column: columns with different chunk layouts (the file read in chunks, columns added
        # whole) make polars re-align the whole frame on every eager select or filter of it.
        object.__setattr__(self, "contratacoes", with_object_class(contratacoes).rechunk())
        object.__setattr__(self, "contratos", with_object_class(contratos).rechunk())

    def derived(self, key: Hashable, compute: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """A frame derived from this dataset, computed once per `key` and shared by the indicators
        that need it (e.g. the dispensas by value with their limits)."""
        memo: dict[Hashable, pl.DataFrame] = self.__dict__.setdefault("_derived", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    @cached_property
    def direct_awards(self) -> pl.DataFrame:
        """Contratações by dispensa (8) or inexigibilidade (9)."""
        direct = self.contratacoes.select(pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES)).to_series()
        # E.g. a feed of direct awards only: the same frame rather than a copy of it.
        if direct.fill_null(False).all():
            return self.contratacoes
        return self.contratacoes.filter(direct)

    @cached_property
    def contratos_enriched(self) -> pl.DataFrame:
        """Contratos with modalidade_id, amparo_code, amparo_name and object_class of their contratação, and
        `purchase_row`, the contratação's position in `contratacoes` (the first row with its control number).

        A contrato whose contratação is not in the dataset keeps its own values (null modalidade, own object
        class, null purchase_row); `purchase_found` says which case applies.
        """
        inherited = ("modalidade_id", "amparo_code", "amparo_name", "object_class")
        parents = self.contratacoes.select(
            pl.col("control_number").alias("purchase_control_number"),
            *(pl.col(name).alias(f"_purchase_{name}") for name in inherited),
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("purchase_row"),
            pl.lit(True).alias("purchase_found"),
        ).unique("purchase_control_number", keep="first", maintain_order=True)
        # Joined on the key column alone and attached: joining the wide frame would copy every column.
        found = self.contratos.select("purchase_control_number", *inherited).join(
            parents, on="purchase_control_number", how="left", maintain_order="left"
        )
        return self.contratos.with_columns(
            found.select(
                *(pl.coalesce(f"_purchase_{name}", name).alias(name) for name in inherited),
                "purchase_row",
                pl.col("purchase_found").fill_null(False),
            )
        )

    def purchase_among(self, contratacao_rows: pl.Series) -> pl.Expr:
        """Over `contratos_enriched`: the position of each contrato's contratação in `contratacao_rows` (rows
        of `contratacoes`), null when it is not among them. Found by position, not by joining control numbers.
        """
        position = pl.repeat(None, self.contratacoes.height, dtype=pl.UInt32(), eager=True).scatter(
            contratacao_rows, pl.int_range(contratacao_rows.len(), dtype=pl.UInt32, eager=True)
        )
        return pl.lit(position).gather(pl.col("purchase_row"))


@dataclass(frozen=True)
class RuleResult:
    findings: list[Finding]
    skipped: int = 0  # records missing a field this indicator needs (counted, never a crash)
    meta: dict[str, Any] = field(default_factory=dict)  # thresholds/fences used, group counts


class Indicator(ABC):
    """One red flag. Subclasses declare the class variables and compute over whole frames in `run`."""

    id: ClassVar[str]
    version: ClassVar[str]
    title: ClassVar[str]  # Portuguese
    description: ClassVar[str]  # Portuguese
    legal_basis: ClassVar[str | None]  # e.g. "Lei 14.133/2021, art. 75, II"; None when from the literature
    reference: ClassVar[str]  # law / decree / paper / OCP Cardinal rule it follows
    severity: ClassVar[Severity]
    scope: ClassVar[Literal["record", "buyer", "supplier", "global"]]  # peer group it needs
    defaults: ClassVar[Mapping[str, Any]]  # parameters, overridable by redflags.toml and env
    needs: ClassVar[tuple[str, ...]]  # columns it reads

    @abstractmethod
    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult: ...


REGISTRY: dict[str, Indicator] = {}

_I = TypeVar("_I", bound=type[Indicator])


def register(cls: _I) -> _I:
    """Class decorator: instantiate the indicator and register it under its id (ids are unique)."""
    if cls.id in REGISTRY and type(REGISTRY[cls.id]) is not cls:
        raise ValueError(f"indicator id {cls.id!r} registered twice")
    REGISTRY[cls.id] = cls()
    return cls
