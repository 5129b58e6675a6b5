"""The typed view of a PNCP record that storage and analysis agree on.

Column names here are the contract between `sources` (which produce them), `store` (which persists them as
typed columns next to the raw JSON) and `redflags` (which reads them as polars columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class RecordKind(StrEnum):
    CONTRATACAO = "contratacao"  # /v1/contratacoes/publicacao
    CONTRATO = "contrato"  # /v1/contratos


# PNCP modalidade ids of direct awards (purchases without a tender).
MODALIDADE_DISPENSA = 8
MODALIDADE_INEXIGIBILIDADE = 9
DIRECT_AWARD_MODALIDADES = (MODALIDADE_DISPENSA, MODALIDADE_INEXIGIBILIDADE)


@dataclass(slots=True)
class Record:
    """One contratação or contrato, validated; `raw` is the source JSON kept verbatim."""

    kind: RecordKind
    control_number: str  # numeroControlePNCP
    raw: dict[str, Any]
    content_hash: str  # sha256 hex of the canonical raw JSON
    purchase_control_number: str | None = None  # contrato.numeroControlePncpCompra
    buyer_cnpj: str | None = None  # orgaoEntidade.cnpj (14 digits)
    buyer_name: str | None = None  # orgaoEntidade.razaoSocial
    sphere: str | None = None  # orgaoEntidade.esferaId: F, E, M, D
    power: str | None = None  # orgaoEntidade.poderId: E, L, J, N
    unit_code: str | None = None  # unidadeOrgao.codigoUnidade
    unit_name: str | None = None  # unidadeOrgao.nomeUnidade
    uf: str | None = None  # unidadeOrgao.ufSigla
    municipality: str | None = None  # unidadeOrgao.municipioNome
    ibge_code: str | None = None  # unidadeOrgao.codigoIbge
    year: int | None = None  # anoCompra / anoContrato
    sequence: int | None = None  # sequencialCompra / sequencialContrato
    modalidade_id: int | None = None  # modalidadeId (contratações only)
    modalidade_name: str | None = None
    amparo_code: int | None = None  # amparoLegal.codigo
    amparo_name: str | None = None  # amparoLegal.nome, e.g. "Lei 14.133/2021, Art. 75, II"
    situation_id: int | None = None  # situacaoCompraId
    object: str | None = None  # objetoCompra / objetoContrato
    value_estimated: Decimal | None = None  # valorTotalEstimado
    value_homologated: Decimal | None = None  # valorTotalHomologado
    value_initial: Decimal | None = None  # contrato.valorInicial
    value_global: Decimal | None = None  # contrato.valorGlobal
    published_at: datetime | None = None  # dataPublicacaoPncp
    source_updated_at: datetime | None = None  # dataAtualizacao
    proposal_open_at: datetime | None = None  # dataAberturaProposta
    proposal_close_at: datetime | None = None  # dataEncerramentoProposta
    signed_at: date | None = None  # contrato.dataAssinatura
    term_start: date | None = None  # contrato.dataVigenciaInicio
    term_end: date | None = None  # contrato.dataVigenciaFim
    supplier_id: str | None = None  # contrato.niFornecedor (CNPJ, CPF or foreign id)
    supplier_name: str | None = None  # contrato.nomeRazaoSocialFornecedor
    supplier_type: str | None = None  # contrato.tipoPessoa: PJ, PF, PE
    supplier_id_valid: bool | None = None  # check digits of a CNPJ/CPF; None when not checkable
    warnings: list[str] = field(default_factory=list)  # kept-but-marked problems (e.g. bad check digits)
    raw_json: bytes | None = None  # `raw` as the source wrote it, when known: stored as is, not re-serialised


# Typed columns in the order storage and the analysis frame use them (everything but raw/warnings).
RECORD_COLUMNS: tuple[str, ...] = tuple(
    name for name in Record.__dataclass_fields__ if name not in ("raw", "warnings", "raw_json")
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be used: quarantined with its reason, never dropped."""

    reason: str
    raw: Any
    control_number: str | None = None


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class FindingStatus(StrEnum):
    NEW = "new"
    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"
    DISMISSED = "dismissed"


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made building findings
# 3-4x slower (a third of split_purchase's time at a million records).
@dataclass(slots=True)
class Finding:
    """One red flag on one record. Exactly the keys that `cidadao analyse` writes per line."""

    rule: str
    rule_version: str
    record: str  # numeroControlePNCP of the flagged contratação or contrato
    severity: Severity
    score: float  # 0..1
    message: str  # one Portuguese sentence with the numbers
    evidence: dict[str, Any]
    legal_basis: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "rule_version": self.rule_version,
            "record": self.record,
            "severity": self.severity.value,
            "score": self.score,
            "message": self.message,
            "evidence": self.evidence,
            "legal_basis": self.legal_basis,
        }


def pncp_link(kind: RecordKind, cnpj: str, year: int, sequence: int) -> str:
    """Public PNCP page of a record, for reporters to check a flag."""
    section = "editais" if kind is RecordKind.CONTRATACAO else "contratos"
    return f"https://pncp.gov.br/app/{section}/{cnpj}/{year}/{sequence}"
