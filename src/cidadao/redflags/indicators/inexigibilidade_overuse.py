"""14 inexigibilidade_overuse: a buyer's share of value by inexigibilidade is unusual in its sphere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import MODALIDADE_INEXIGIBILIDADE, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.stats import cents_sum, excess_score, quartile, tukey_upper
from cidadao.redflags.text import cents, link, money, percent

BUYER = ["buyer_cnpj", "year"]
PEERS = ["sphere", "year"]
SPHERES = {"F": "federal", "E": "estadual", "M": "municipal", "D": "distrital"}


@register
class InexigibilidadeOveruse(Indicator):
    id = "inexigibilidade_overuse"
    version = "1"
    title = "Uso excessivo de inexigibilidade"
    description = (
        "Órgão cuja parcela do valor contratado no ano por inexigibilidade (modalidade 9) está acima da "
        "cerca de Tukey (Q3 + 1,5·IQR) dos órgãos da mesma esfera, e é de pelo menos 20 %; a parcela é "
        "sobre o valor de todas as contratações do órgão presentes nos dados."
    )
    legal_basis = "Lei 14.133/2021, art. 74 (inexigibilidade: inviabilidade de competição)"
    reference = (
        "Tukey (1977), cercas de Tukey, como nas regras do OCP Cardinal (Open Contracting Partnership)"
    )
    severity = Severity.LOW
    scope = "global"
    defaults: ClassVar[Mapping[str, Any]] = {
        "tukey_k": 1.5,
        "min_buyers": 20,
        "min_records": 5,
        "min_share": 0.2,
    }
    needs = ("modalidade_id", "buyer_cnpj", "sphere", "year", "value")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        population = data.contratacoes
        usable = population.drop_nulls(["modalidade_id", "buyer_cnpj", "sphere", "year", "value"])
        is_inex = pl.col("modalidade_id") == MODALIDADE_INEXIGIBILIDADE
        share = pl.col("share")
        buyers = (
            usable.group_by([*BUYER, "sphere"])
            .agg(
                pl.len().alias("records"),
                cents_sum(pl.col("value")).alias("total_value"),
                cents_sum(pl.col("value").filter(is_inex)).alias("inex_value"),
            )
            .filter((pl.col("records") >= params["min_records"]) & (pl.col("total_value") > 0))
            .with_columns((pl.col("inex_value") / pl.col("total_value")).alias("share"))
            .with_columns(
                pl.len().over(PEERS).alias("peer_buyers"),
                quartile(share, 0.25).over(PEERS).alias("q1"),
                quartile(share, 0.75).over(PEERS).alias("q3"),
                tukey_upper(share, params["tukey_k"]).over(PEERS).alias("fence"),
            )
        )
        overusing = buyers.filter(
            (pl.col("peer_buyers") >= params["min_buyers"])
            & (share > pl.col("fence"))
            & (share >= params["min_share"])
        ).with_columns(
            excess_score(share, pl.max_horizontal("fence", pl.lit(params["min_share"]))).alias("score")
        )
        flagged = usable.filter(is_inex).join(overusing.drop("sphere"), on=BUYER)
        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={"buyers_evaluated": buyers.height, "buyers_flagged": overusing.height},
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        buyer = row["buyer_name"] or row["buyer_cnpj"]
        sphere = SPHERES.get(row["sphere"], row["sphere"])
        message = (
            f"Inexigibilidade de {money(row['value'])} de {buyer}, que em {row['year']} contratou "
            f"{percent(row['share'])} do seu valor por inexigibilidade ({money(row['inex_value'])} de "
            f"{money(row['total_value'])}), acima da cerca de Tukey de {percent(row['fence'])} calculada "
            f"entre {row['peer_buyers']} órgãos da esfera {sphere}"
        )
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(row["score"], 4),
            message=message,
            evidence={
                "buyer_cnpj": row["buyer_cnpj"],
                "buyer_name": row["buyer_name"],
                "year": row["year"],
                "value": cents(row["value"]),
                "inexigibilidade_value": cents(row["inex_value"]),
                "total_value": cents(row["total_value"]),
                "buyer_records": row["records"],
                "share": round(row["share"], 4),
                "peer_group": {"sphere": row["sphere"], "year": row["year"], "buyers": row["peer_buyers"]},
                "peer_q1": round(row["q1"], 4),
                "peer_q3": round(row["q3"], 4),
                "tukey_fence": round(row["fence"], 4),
                "threshold": dict(params),
                "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
