"""The shipped real sample as PNCP records: 89 real contratações and 49 contratos derived from real results.

PNCP, via Transparência Brasil (see cidadao/data/pncp-sample/PROVENANCE.md). The sample has no contratos, so
`sample_contratos` derives one per (purchase, supplier) from the 81 real item results: supplier id, name and
type, the purchase it links to and the value (sum of the homologated item totals) are real; the contract's own
control number and sequence, term end (signature + 365 days) and the buyer unit of purchases outside the 89
contratações are derived. Every derived contrato says so in `informacaoComplementar`.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from cidadao.data import sample_paths
from cidadao.domain.records import Rejection
from cidadao.sources.files import read_records

DERIVED_NOTE = "Contrato derivado dos resultados reais de itens (PNCP, via Transparência Brasil) para testes."


def _rows(path: Any) -> list[dict[str, Any]]:
    rows = []
    for row in read_records(path):
        if isinstance(row, Rejection):
            raise ValueError(f"the shipped sample is damaged: {row.reason}")
        rows.append(row)
    return rows


@cache
def _sample_contratacoes() -> tuple[dict[str, Any], ...]:
    return tuple(_rows(sample_paths().contratacoes))


def sample_contratacoes() -> list[dict[str, Any]]:
    """The 89 real contratações (modalidade 6), as the API returns them (fresh copies)."""
    return copy.deepcopy(list(_sample_contratacoes()))


def sample_contratos() -> list[dict[str, Any]]:
    """One contrato per (purchase, supplier) of the 81 real item results, linked to its purchase."""
    purchases = {row["numeroControlePNCP"]: row for row in _sample_contratacoes()}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for result in _rows(sample_paths().resultados):
        groups[(result["numeroControlePNCPCompra"], result["niFornecedor"])].append(result)
    sequences: dict[tuple[str, int], int] = defaultdict(int)
    contratos = []
    for (purchase_number, supplier_id), results in sorted(groups.items()):
        buyer_cnpj = purchase_number[:14]
        purchase = purchases.get(purchase_number)
        signed = max(date.fromisoformat(str(result["dataResultado"])[:10]) for result in results)
        published = max(str(result["dataAtualizacao"]) for result in results)
        sequences[(buyer_cnpj, signed.year)] += 1
        sequence = sequences[(buyer_cnpj, signed.year)]
        value = float(sum(Decimal(str(result["valorTotalHomologado"] or 0)) for result in results))
        first = results[0]
        contratos.append(
            {
                "numeroControlePNCP": f"{buyer_cnpj}-2-{sequence:06d}/{signed.year}",
                "numeroControlePncpCompra": purchase_number,
                "anoContrato": signed.year,
                "sequencialContrato": sequence,
                "numeroContratoEmpenho": f"{sequence}/{signed.year}",
                "tipoContrato": {"id": 1, "nome": "Contrato (termo inicial)"},
                "categoriaProcesso": {"id": 2, "nome": "Compras"},
                "orgaoEntidade": purchase["orgaoEntidade"] if purchase else {"cnpj": buyer_cnpj},
                "unidadeOrgao": purchase["unidadeOrgao"] if purchase else None,
                "niFornecedor": supplier_id,
                "tipoPessoa": first["tipoPessoa"],
                "nomeRazaoSocialFornecedor": first["nomeRazaoSocialFornecedor"],
                "objetoContrato": purchase["objetoCompra"] if purchase else None,
                "informacaoComplementar": DERIVED_NOTE,
                "valorInicial": value,
                "valorGlobal": value,
                "numeroParcelas": 1,
                "valorParcela": value,
                "valorAcumulado": 0,
                "dataAssinatura": signed.isoformat(),
                "dataVigenciaInicio": signed.isoformat(),
                "dataVigenciaFim": (signed + timedelta(days=365)).isoformat(),
                "dataPublicacaoPncp": published,
                "dataAtualizacao": published,
                "numeroRetificacao": 0,
            }
        )
    return contratos
