"""Validation of PNCP consulta records into `cidadao.domain.records.Record`.

Layouts: contratação as returned by `GET /v1/contratacoes/publicacao` (and `/atualizacao`), contrato as
returned by `GET /v1/contratos`. Only the fields the typed columns need are declared; the rest stays in `raw`.
Unusable records become a `Rejection` naming the field; a CNPJ/CPF with bad check digits is kept and marked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Literal, cast, get_type_hints

import orjson
from pydantic import AliasChoices, AliasPath, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict

from cidadao.domain.ids import classify_id, normalise_id
from cidadao.domain.records import Record, RecordKind, Rejection

# PNCP publishes naive local (Brasília) times; aware inputs are brought to that clock. No DST since 2019.
BRASILIA = timezone(timedelta(hours=-3))
# Outside this range a date is a typo (e.g. year 0201 for 2021), not a procurement date.
MIN_YEAR = 1900
MAX_YEAR = 2199

# Types are checked natively by pydantic-core: no Python callbacks, no nested models. Each typed column is
# read straight from its path in the PNCP JSON (AliasPath), so validation yields the Record's columns.
# Blank strings, common in exports, pass the types and are read as null afterwards.
Blank = Literal[""]
Text = str | None
Int = int | Blank | None
Money = Decimal | Blank | None
Code = str | int | None  # unit and IBGE codes are strings in PNCP; some exports write them as numbers
Timestamp = datetime | Blank | None
Day = date | datetime | Blank | None  # contract dates, sometimes with a time part that carries no meaning


def _at(*path: str) -> Any:
    return Field(validation_alias=AliasPath(*path))


class _CommonColumns(TypedDict, total=False):
    control_number: Annotated[str, _at("numeroControlePNCP")]
    buyer_cnpj: Annotated[Text, _at("orgaoEntidade", "cnpj")]
    buyer_name: Annotated[Text, _at("orgaoEntidade", "razaoSocial")]
    sphere: Annotated[Text, _at("orgaoEntidade", "esferaId")]
    power: Annotated[Text, _at("orgaoEntidade", "poderId")]
    unit_code: Annotated[Code, _at("unidadeOrgao", "codigoUnidade")]
    unit_name: Annotated[Text, _at("unidadeOrgao", "nomeUnidade")]
    uf: Annotated[Text, _at("unidadeOrgao", "ufSigla")]
    municipality: Annotated[Text, _at("unidadeOrgao", "municipioNome")]
    # The contratos layout spells it codigoIBGE.
    ibge_code: Annotated[
        Code,
        Field(
            validation_alias=AliasChoices(
                AliasPath("unidadeOrgao", "codigoIbge"), AliasPath("unidadeOrgao", "codigoIBGE")
            )
        ),
    ]
    published_at: Annotated[Timestamp, _at("dataPublicacaoPncp")]
    source_updated_at: Annotated[Timestamp, _at("dataAtualizacao")]


class ContratacaoColumns(_CommonColumns, total=False):
    """Typed columns of one record of `/v1/contratacoes/publicacao`."""

    year: Annotated[Int, _at("anoCompra")]
    sequence: Annotated[Int, _at("sequencialCompra")]
    modalidade_id: Annotated[Int, _at("modalidadeId")]
    modalidade_name: Annotated[Text, _at("modalidadeNome")]
    amparo_code: Annotated[Int, _at("amparoLegal", "codigo")]
    amparo_name: Annotated[Text, _at("amparoLegal", "nome")]
    situation_id: Annotated[Int, _at("situacaoCompraId")]
    object: Annotated[Text, _at("objetoCompra")]
    value_estimated: Annotated[Money, _at("valorTotalEstimado")]
    value_homologated: Annotated[Money, _at("valorTotalHomologado")]
    proposal_open_at: Annotated[Timestamp, _at("dataAberturaProposta")]
    proposal_close_at: Annotated[Timestamp, _at("dataEncerramentoProposta")]


class ContratoColumns(_CommonColumns, total=False):
    """Typed columns of one record of `/v1/contratos`."""

    purchase_control_number: Annotated[Text, _at("numeroControlePncpCompra")]
    year: Annotated[Int, _at("anoContrato")]
    sequence: Annotated[Int, _at("sequencialContrato")]
    object: Annotated[Text, _at("objetoContrato")]
    value_initial: Annotated[Money, _at("valorInicial")]
    value_global: Annotated[Money, _at("valorGlobal")]
    signed_at: Annotated[Day, _at("dataAssinatura")]
    term_start: Annotated[Day, _at("dataVigenciaInicio")]
    term_end: Annotated[Day, _at("dataVigenciaFim")]
    supplier_id: Annotated[Text, _at("niFornecedor")]
    supplier_name: Annotated[Text, _at("nomeRazaoSocialFornecedor")]
    supplier_type: Annotated[Text, _at("tipoPessoa")]


_VALIDATORS: dict[RecordKind, TypeAdapter[Any]] = {
    RecordKind.CONTRATACAO: TypeAdapter(ContratacaoColumns),
    RecordKind.CONTRATO: TypeAdapter(ContratoColumns),
}
# Objects whose fields are read by path: a path through a non-object would silently read as absent.
_NESTED = ("orgaoEntidade", "unidadeOrgao", "amparoLegal")
_TIMESTAMPS = ("published_at", "source_updated_at", "proposal_open_at", "proposal_close_at")
_DAYS = ("signed_at", "term_start", "term_end")


def _source_paths() -> dict[str, str]:
    """Column -> dotted PNCP path (first choice), for messages."""
    paths: dict[str, str] = {}
    for model in (ContratacaoColumns, ContratoColumns):
        for column, hint in get_type_hints(model, include_extras=True).items():
            info = next(item for item in hint.__metadata__ if isinstance(item, FieldInfo))
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                alias = alias.choices[0]
            assert isinstance(alias, AliasPath)
            paths.setdefault(column, ".".join(str(part) for part in alias.path))
    return paths


_PATHS = _source_paths()
_PNCP_NAMES = frozenset(part for path in _PATHS.values() for part in path.split(".")) | {"codigoIBGE"}


class _FieldError(ValueError):
    def __init__(self, field: str, message: str, value: Any) -> None:
        super().__init__(f"field {field}: {message} (got {_shown(value)})")


def _shown(value: Any) -> str:
    text = (
        repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    )
    return text if len(text) <= 60 else text[:57] + "..."


_CONTRATO_MARKERS = ("numeroControlePncpCompra", "niFornecedor", "anoContrato", "valorInicial", "valorGlobal")
_CONTRATACAO_MARKERS = ("anoCompra", "modalidadeId", "objetoCompra", "valorTotalEstimado", "sequencialCompra")


def detect_kind(raw: dict[str, Any]) -> RecordKind | None:
    """Tell a contrato from a contratação by the fields only one of them has."""
    # Plain loops: this runs once per ingested record, and a generator inside any() costs several times more.
    for name in _CONTRATO_MARKERS:
        if name in raw:
            return RecordKind.CONTRATO
    for name in _CONTRATACAO_MARKERS:
        if name in raw:
            return RecordKind.CONTRATACAO
    return None


def content_hash(raw: Any) -> str:
    """sha256 hex of the canonical JSON (sorted keys): equal records hash equal whatever their key order."""
    return hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _describe(error: ValidationError) -> str:
    problems: dict[str, str] = {}
    for item in error.errors(include_url=False):
        parts = []
        for part in item["loc"]:
            if not isinstance(part, str) or part not in _PNCP_NAMES:
                break
            parts.append(part)
        field = ".".join(parts) or "record"
        if field not in problems:  # a union reports once per member; the first says it best
            message = str(item["msg"]).removeprefix("Value error, ")
            problems[field] = f"field {field}: {message} (got {_shown(item.get('input'))})"
    return "; ".join(list(problems.values())[:3])


@lru_cache(maxsize=1 << 16)
def _id_status(ni: str) -> tuple[str, str, bool | None]:
    # Buyers and suppliers repeat across records: check each id once.
    kind, valid = classify_id(ni)
    return normalise_id(ni), kind, valid


def _control_number(raw: dict[str, Any]) -> str | None:
    value = raw.get("numeroControlePNCP")
    return value if isinstance(value, str) and value else None


def parse_record(raw: Any, kind: RecordKind | None = None, text: bytes | None = None) -> Record | Rejection:
    """Validate one PNCP record and fill every typed column; `kind` is detected from the fields when None.

    `text`, the record as read from the source (`files.read_sourced_records`), is kept as `raw_json`.
    """
    if not isinstance(raw, dict):
        return Rejection(f"not a JSON object but {type(raw).__name__}", raw)
    control = _control_number(raw)
    if kind is None:
        kind = detect_kind(raw)
        if kind is None:
            return Rejection("cannot tell a contratação from a contrato: no known PNCP field", raw, control)
    if "numeroControlePNCP" not in raw or raw["numeroControlePNCP"] in (None, ""):
        return Rejection("field numeroControlePNCP: missing control number", raw, None)
    try:
        digest = content_hash(raw)
    except (TypeError, orjson.JSONEncodeError) as error:
        return Rejection(f"not serialisable as JSON: {error}", raw, control)
    for name in _NESTED:
        nested = raw.get(name)
        if nested is not None and not isinstance(nested, dict):
            return Rejection(f"field {name}: expected a JSON object (got {_shown(nested)})", raw, control)
    try:
        columns = cast(dict[str, Any], _VALIDATORS[kind].validate_python(raw))
        warnings = _normalise(columns, kind)
    except ValidationError as error:
        return Rejection(_describe(error), raw, control)
    except _FieldError as error:
        return Rejection(str(error), raw, control)
    return Record(kind=kind, raw=raw, content_hash=digest, warnings=warnings, raw_json=text, **columns)


def parse_records(raws: Iterable[Any], kind: RecordKind | None = None) -> Iterator[Record | Rejection]:
    """`parse_record` over a stream; file-reader rejections pass through unchanged."""
    for raw in raws:
        yield raw if isinstance(raw, Rejection) else parse_record(raw, kind)


def _normalise(columns: dict[str, Any], kind: RecordKind) -> list[str]:
    """Blanks to null, codes to text, dates checked and on Brasília time, ids checked; returns warnings."""
    if "" in columns.values():
        for name, value in list(columns.items()):
            if value == "":
                columns[name] = None
    for name in ("unit_code", "ibge_code"):
        code = columns.get(name)
        if code is not None and not isinstance(code, str):
            columns[name] = str(code)
    for name in _TIMESTAMPS:
        moment = columns.get(name)
        if moment is not None:
            if not MIN_YEAR <= moment.year <= MAX_YEAR:
                raise _FieldError(
                    _PATHS[name],
                    f"year {moment.year} out of range {MIN_YEAR}..{MAX_YEAR}",
                    moment.isoformat(),
                )
            if moment.tzinfo is not None:
                columns[name] = moment.astimezone(BRASILIA).replace(tzinfo=None)
    warnings: list[str] = []
    cnpj = columns.get("buyer_cnpj")
    if cnpj:
        columns["buyer_cnpj"], buyer_kind, buyer_valid = _id_status(cnpj)
        if buyer_kind != "cnpj" or not buyer_valid:
            warnings.append(f"orgaoEntidade.cnpj {cnpj!r} is not a valid CNPJ")
    if kind is RecordKind.CONTRATO:
        for name in _DAYS:
            day = columns.get(name)
            if day is not None:
                if isinstance(day, datetime):
                    day = columns[name] = day.date()
                if not MIN_YEAR <= day.year <= MAX_YEAR:
                    raise _FieldError(
                        _PATHS[name], f"year {day.year} out of range {MIN_YEAR}..{MAX_YEAR}", day.isoformat()
                    )
        _check_supplier(columns, warnings)
    return warnings


def _check_supplier(columns: dict[str, Any], warnings: list[str]) -> None:
    ni = columns.get("supplier_id")
    if not ni:
        return
    supplier_type = columns.get("supplier_type")
    columns["supplier_id"], id_kind, valid = _id_status(ni)
    # Foreign suppliers (tipoPessoa PE) carry ids we cannot check.
    if supplier_type != "PE" and id_kind in ("cnpj", "cpf"):
        columns["supplier_id_valid"] = valid
        if not valid:
            warnings.append(f"niFornecedor {ni!r}: {id_kind.upper()} check digits do not match")
    elif supplier_type in ("PJ", "PF"):
        columns["supplier_id_valid"] = False
        warnings.append(f"niFornecedor {ni!r}: not a CNPJ or CPF")
