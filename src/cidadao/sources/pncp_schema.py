"""Pydantic models of PNCP consulta records and their conversion into `cidadao.domain.records.Record`.

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
from typing import Any, Literal, Required

import orjson
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from cidadao.domain.ids import classify_id, normalise_id
from cidadao.domain.records import Record, RecordKind, Rejection

# PNCP publishes naive local (Brasília) times; aware inputs are brought to that clock. No DST since 2019.
BRASILIA = timezone(timedelta(hours=-3))
# Outside this range a date is a typo (e.g. year 0201 for 2021), not a procurement date.
MIN_YEAR = 1900
MAX_YEAR = 2199

# Field types are validated natively by pydantic-core (no Python callbacks: they cost more than the rest of
# the validation together). Blank strings, common in exports, are allowed by the type and read as null when
# the typed columns are filled.
Blank = Literal[""]
Text = str | None
Int = int | Blank | None
Money = Decimal | Blank | None
Code = str | int | None  # unit and IBGE codes are strings in PNCP; some exports write them as numbers
Timestamp = datetime | Blank | None
Day = date | datetime | Blank | None  # contract dates, sometimes with a time part that carries no meaning


# TypedDicts rather than BaseModels: pydantic-core validates them several times faster, and the result is only
# read once, to fill the Record. total=False: every field may be absent.
class OrgaoEntidade(TypedDict, total=False):
    cnpj: Text
    razaoSocial: Text
    poderId: Text
    esferaId: Text


class UnidadeOrgao(TypedDict, total=False):
    codigoUnidade: Code
    nomeUnidade: Text
    ufSigla: Text
    municipioNome: Text
    codigoIbge: Code
    codigoIBGE: Code  # the contratos layout spells it so


class AmparoLegal(TypedDict, total=False):
    codigo: Int
    nome: Text
    descricao: Text


class _Common(TypedDict, total=False):
    numeroControlePNCP: Required[str]
    orgaoEntidade: OrgaoEntidade | None
    unidadeOrgao: UnidadeOrgao | None
    dataPublicacaoPncp: Timestamp
    dataAtualizacao: Timestamp


class Contratacao(_Common, total=False):
    """One record of `/v1/contratacoes/publicacao` (the fields the typed columns need)."""

    anoCompra: Int
    sequencialCompra: Int
    modalidadeId: Int
    modalidadeNome: Text
    amparoLegal: AmparoLegal | None
    objetoCompra: Text
    valorTotalEstimado: Money
    valorTotalHomologado: Money
    dataAberturaProposta: Timestamp
    dataEncerramentoProposta: Timestamp
    situacaoCompraId: Int


class Contrato(_Common, total=False):
    """One record of `/v1/contratos` (the fields the typed columns need)."""

    numeroControlePncpCompra: Text
    anoContrato: Int
    sequencialContrato: Int
    niFornecedor: Text
    tipoPessoa: Text
    nomeRazaoSocialFornecedor: Text
    objetoContrato: Text
    valorInicial: Money
    valorGlobal: Money
    dataAssinatura: Day
    dataVigenciaInicio: Day
    dataVigenciaFim: Day


_CONTRATACAO = TypeAdapter(Contratacao)
_CONTRATO = TypeAdapter(Contrato)

# Every declared field name: error locations are cut at the first part that is not one (a union member).
_FIELD_NAMES = frozenset(
    name
    for model in (OrgaoEntidade, UnidadeOrgao, AmparoLegal, Contratacao, Contrato)
    for name in model.__annotations__
)


class _FieldError(ValueError):
    def __init__(self, field: str, message: str, value: Any) -> None:
        super().__init__(f"field {field}: {message} (got {_shown(value)})")


def _shown(value: Any) -> str:
    text = (
        repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _none(value: Any) -> Any:
    return None if value == "" else value


def _code(value: str | int | None) -> str | None:
    return str(value) if value is not None and value != "" else None


def _moment(field: str, value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    assert isinstance(value, datetime)
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise _FieldError(field, f"year {value.year} out of range {MIN_YEAR}..{MAX_YEAR}", value.isoformat())
    if value.tzinfo is not None:
        value = value.astimezone(BRASILIA).replace(tzinfo=None)
    return value


def _day(field: str, value: date | str | None) -> date | None:
    if value is None or value == "":
        return None
    assert isinstance(value, date)
    if isinstance(value, datetime):
        value = value.date()
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise _FieldError(field, f"year {value.year} out of range {MIN_YEAR}..{MAX_YEAR}", value.isoformat())
    return value


_CONTRATO_MARKERS = ("numeroControlePncpCompra", "niFornecedor", "anoContrato", "valorInicial", "valorGlobal")
_CONTRATACAO_MARKERS = ("anoCompra", "modalidadeId", "objetoCompra", "valorTotalEstimado", "sequencialCompra")


def detect_kind(raw: dict[str, Any]) -> RecordKind | None:
    """Tell a contrato from a contratação by the fields only one of them has."""
    if any(name in raw for name in _CONTRATO_MARKERS):
        return RecordKind.CONTRATO
    if any(name in raw for name in _CONTRATACAO_MARKERS):
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
            if not isinstance(part, str) or part not in _FIELD_NAMES:
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


def parse_record(raw: Any, kind: RecordKind | None = None) -> Record | Rejection:
    """Validate one PNCP record and fill every typed column; `kind` is detected from the fields when None."""
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
    try:
        if kind is RecordKind.CONTRATACAO:
            return _from_contratacao(_CONTRATACAO.validate_python(raw), raw, digest)
        return _from_contrato(_CONTRATO.validate_python(raw), raw, digest)
    except ValidationError as error:
        return Rejection(_describe(error), raw, control)
    except _FieldError as error:
        return Rejection(str(error), raw, control)


def parse_records(raws: Iterable[Any], kind: RecordKind | None = None) -> Iterator[Record | Rejection]:
    """`parse_record` over a stream; file-reader rejections pass through unchanged."""
    for raw in raws:
        yield raw if isinstance(raw, Rejection) else parse_record(raw, kind)


def _common(valid: _Common, raw: dict[str, Any], digest: str, kind: RecordKind) -> Record:
    record = Record(kind=kind, control_number=valid["numeroControlePNCP"], raw=raw, content_hash=digest)
    orgao = valid.get("orgaoEntidade")
    if orgao:
        cnpj = orgao.get("cnpj")
        if cnpj:
            record.buyer_cnpj, buyer_kind, buyer_valid = _id_status(cnpj)
            if buyer_kind != "cnpj" or not buyer_valid:
                record.warnings.append(f"orgaoEntidade.cnpj {cnpj!r} is not a valid CNPJ")
        record.buyer_name = orgao.get("razaoSocial") or None
        record.sphere = orgao.get("esferaId") or None
        record.power = orgao.get("poderId") or None
    unit = valid.get("unidadeOrgao")
    if unit:
        record.unit_code = _code(unit.get("codigoUnidade"))
        record.unit_name = unit.get("nomeUnidade") or None
        record.uf = unit.get("ufSigla") or None
        record.municipality = unit.get("municipioNome") or None
        record.ibge_code = _code(unit.get("codigoIbge")) or _code(unit.get("codigoIBGE"))
    record.published_at = _moment("dataPublicacaoPncp", valid.get("dataPublicacaoPncp"))
    record.source_updated_at = _moment("dataAtualizacao", valid.get("dataAtualizacao"))
    return record


def _from_contratacao(valid: Contratacao, raw: dict[str, Any], digest: str) -> Record:
    record = _common(valid, raw, digest, RecordKind.CONTRATACAO)
    record.year = _none(valid.get("anoCompra"))
    record.sequence = _none(valid.get("sequencialCompra"))
    record.modalidade_id = _none(valid.get("modalidadeId"))
    record.modalidade_name = valid.get("modalidadeNome") or None
    amparo = valid.get("amparoLegal")
    if amparo:
        record.amparo_code = _none(amparo.get("codigo"))
        record.amparo_name = amparo.get("nome") or None
    record.situation_id = _none(valid.get("situacaoCompraId"))
    record.object = valid.get("objetoCompra") or None
    record.value_estimated = _none(valid.get("valorTotalEstimado"))
    record.value_homologated = _none(valid.get("valorTotalHomologado"))
    record.proposal_open_at = _moment("dataAberturaProposta", valid.get("dataAberturaProposta"))
    record.proposal_close_at = _moment("dataEncerramentoProposta", valid.get("dataEncerramentoProposta"))
    return record


def _from_contrato(valid: Contrato, raw: dict[str, Any], digest: str) -> Record:
    record = _common(valid, raw, digest, RecordKind.CONTRATO)
    record.purchase_control_number = valid.get("numeroControlePncpCompra") or None
    record.year = _none(valid.get("anoContrato"))
    record.sequence = _none(valid.get("sequencialContrato"))
    record.object = valid.get("objetoContrato") or None
    record.value_initial = _none(valid.get("valorInicial"))
    record.value_global = _none(valid.get("valorGlobal"))
    record.signed_at = _day("dataAssinatura", valid.get("dataAssinatura"))
    record.term_start = _day("dataVigenciaInicio", valid.get("dataVigenciaInicio"))
    record.term_end = _day("dataVigenciaFim", valid.get("dataVigenciaFim"))
    record.supplier_name = valid.get("nomeRazaoSocialFornecedor") or None
    supplier_type = record.supplier_type = valid.get("tipoPessoa") or None
    ni = valid.get("niFornecedor")
    if ni:
        record.supplier_id, id_kind, valid_id = _id_status(ni)
        # Foreign suppliers (tipoPessoa PE) carry ids we cannot check.
        if supplier_type != "PE" and id_kind in ("cnpj", "cpf"):
            record.supplier_id_valid = valid_id
            if not valid_id:
                record.warnings.append(f"niFornecedor {ni!r}: {id_kind.upper()} check digits do not match")
        elif supplier_type in ("PJ", "PF"):
            record.supplier_id_valid = False
            record.warnings.append(f"niFornecedor {ni!r}: not a CNPJ or CPF")
    return record
