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
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from cidadao.domain.ids import classify_id, normalise_id
from cidadao.domain.records import Record, RecordKind, Rejection

# PNCP publishes naive local (Brasília) times; aware inputs are brought to that clock. No DST since 2019.
BRASILIA = timezone(timedelta(hours=-3))
# Outside this range a date is a typo (e.g. year 0201 for 2021), not a procurement date.
MIN_YEAR = 1900
MAX_YEAR = 2199


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _checked_datetime(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} out of range {MIN_YEAR}..{MAX_YEAR}")
    if value.tzinfo is not None:
        value = value.astimezone(BRASILIA).replace(tzinfo=None)
    return value


def _date_part(value: Any) -> Any:
    """Contract dates come as YYYY-MM-DD, sometimes with a time part that carries no meaning."""
    value = _blank_to_none(value)
    if isinstance(value, str) and len(value) > 10 and value[10] in "T ":
        return value[:10]
    return value


def _checked_date(value: date | None) -> date | None:
    if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year {value.year} out of range {MIN_YEAR}..{MAX_YEAR}")
    return value


def _no_bool(value: Any) -> Any:
    # pydantic would read true as 1; a boolean where a number belongs is a wrong type.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return _blank_to_none(value)


def _code(value: Any) -> Any:
    # Unit and IBGE codes are strings in PNCP, but some exports write them as numbers.
    value = _blank_to_none(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Text = Annotated[str | None, BeforeValidator(_blank_to_none)]
Int = Annotated[int | None, BeforeValidator(_no_bool)]
Money = Annotated[Decimal | None, BeforeValidator(_no_bool)]
Timestamp = Annotated[datetime | None, BeforeValidator(_blank_to_none), AfterValidator(_checked_datetime)]
Day = Annotated[date | None, BeforeValidator(_date_part), AfterValidator(_checked_date)]
Code = Annotated[str | None, BeforeValidator(_code)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class OrgaoEntidade(_Model):
    cnpj: Text = None
    razaoSocial: Text = None
    poderId: Text = None
    esferaId: Text = None


class UnidadeOrgao(_Model):
    codigoUnidade: Code = None
    nomeUnidade: Text = None
    ufSigla: Text = None
    municipioNome: Text = None
    codigoIbge: Annotated[Code, Field(validation_alias=AliasChoices("codigoIbge", "codigoIBGE"))] = None


class AmparoLegal(_Model):
    codigo: Int = None
    nome: Text = None
    descricao: Text = None


class TipoContrato(_Model):
    id: Int = None
    nome: Text = None


class _Common(_Model):
    numeroControlePNCP: str = Field(min_length=1)
    orgaoEntidade: OrgaoEntidade | None = None
    unidadeOrgao: UnidadeOrgao | None = None
    dataPublicacaoPncp: Timestamp = None
    dataAtualizacao: Timestamp = None


class Contratacao(_Common):
    """One record of `/v1/contratacoes/publicacao`."""

    anoCompra: Int = None
    sequencialCompra: Int = None
    numeroCompra: Text = None
    processo: Text = None
    modalidadeId: Int = None
    modalidadeNome: Text = None
    amparoLegal: AmparoLegal | None = None
    objetoCompra: Text = None
    informacaoComplementar: Text = None
    valorTotalEstimado: Money = None
    valorTotalHomologado: Money = None
    dataAberturaProposta: Timestamp = None
    dataEncerramentoProposta: Timestamp = None
    situacaoCompraId: Int = None
    situacaoCompraNome: Text = None
    srp: bool | None = None


class Contrato(_Common):
    """One record of `/v1/contratos`."""

    numeroControlePncpCompra: Text = None
    anoContrato: Int = None
    sequencialContrato: Int = None
    numeroContratoEmpenho: Text = None
    tipoContrato: TipoContrato | None = None
    categoriaProcesso: TipoContrato | None = None
    niFornecedor: Text = None
    tipoPessoa: Text = None
    nomeRazaoSocialFornecedor: Text = None
    objetoContrato: Text = None
    valorInicial: Money = None
    valorGlobal: Money = None
    valorParcela: Money = None
    numeroParcelas: Int = None
    valorAcumulado: Money = None
    dataAssinatura: Day = None
    dataVigenciaInicio: Day = None
    dataVigenciaFim: Day = None


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
    problems = []
    for item in error.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in item["loc"]) or "record"
        value = item.get("input")
        shown = (
            repr(value)
            if isinstance(value, str | int | float | bool) or value is None
            else type(value).__name__
        )
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"field {field}: {message} (got {shown})")
    return "; ".join(problems)


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
            return _from_contratacao(Contratacao.model_validate(raw), raw, digest)
        return _from_contrato(Contrato.model_validate(raw), raw, digest)
    except ValidationError as error:
        return Rejection(_describe(error), raw, control)


def parse_records(raws: Iterable[Any], kind: RecordKind | None = None) -> Iterator[Record | Rejection]:
    """`parse_record` over a stream; file-reader rejections pass through unchanged."""
    for raw in raws:
        yield raw if isinstance(raw, Rejection) else parse_record(raw, kind)


def _common(model: _Common, raw: dict[str, Any], digest: str, kind: RecordKind) -> Record:
    record = Record(kind=kind, control_number=model.numeroControlePNCP, raw=raw, content_hash=digest)
    orgao = model.orgaoEntidade
    if orgao is not None:
        if orgao.cnpj is not None:
            record.buyer_cnpj, buyer_kind, buyer_valid = _id_status(orgao.cnpj)
            if buyer_kind != "cnpj" or not buyer_valid:
                record.warnings.append(f"orgaoEntidade.cnpj {orgao.cnpj!r} is not a valid CNPJ")
        record.buyer_name = orgao.razaoSocial
        record.sphere = orgao.esferaId
        record.power = orgao.poderId
    unit = model.unidadeOrgao
    if unit is not None:
        record.unit_code = unit.codigoUnidade
        record.unit_name = unit.nomeUnidade
        record.uf = unit.ufSigla
        record.municipality = unit.municipioNome
        record.ibge_code = unit.codigoIbge
    record.published_at = model.dataPublicacaoPncp
    record.source_updated_at = model.dataAtualizacao
    return record


def _from_contratacao(model: Contratacao, raw: dict[str, Any], digest: str) -> Record:
    record = _common(model, raw, digest, RecordKind.CONTRATACAO)
    record.year = model.anoCompra
    record.sequence = model.sequencialCompra
    record.modalidade_id = model.modalidadeId
    record.modalidade_name = model.modalidadeNome
    if model.amparoLegal is not None:
        record.amparo_code = model.amparoLegal.codigo
        record.amparo_name = model.amparoLegal.nome
    record.situation_id = model.situacaoCompraId
    record.object = model.objetoCompra
    record.value_estimated = model.valorTotalEstimado
    record.value_homologated = model.valorTotalHomologado
    record.proposal_open_at = model.dataAberturaProposta
    record.proposal_close_at = model.dataEncerramentoProposta
    return record


def _from_contrato(model: Contrato, raw: dict[str, Any], digest: str) -> Record:
    record = _common(model, raw, digest, RecordKind.CONTRATO)
    record.purchase_control_number = model.numeroControlePncpCompra
    record.year = model.anoContrato
    record.sequence = model.sequencialContrato
    record.object = model.objetoContrato
    record.value_initial = model.valorInicial
    record.value_global = model.valorGlobal
    record.signed_at = model.dataAssinatura
    record.term_start = model.dataVigenciaInicio
    record.term_end = model.dataVigenciaFim
    record.supplier_name = model.nomeRazaoSocialFornecedor
    record.supplier_type = model.tipoPessoa
    if model.niFornecedor is not None:
        record.supplier_id, id_kind, valid = _id_status(model.niFornecedor)
        # Foreign suppliers (tipoPessoa PE) carry ids we cannot check.
        if model.tipoPessoa != "PE" and id_kind in ("cnpj", "cpf"):
            record.supplier_id_valid = valid
            if not valid:
                record.warnings.append(
                    f"niFornecedor {model.niFornecedor!r}: {id_kind.upper()} check digits do not match"
                )
        elif model.tipoPessoa in ("PJ", "PF"):
            record.supplier_id_valid = False
            record.warnings.append(f"niFornecedor {model.niFornecedor!r}: not a CNPJ or CPF")
    return record
