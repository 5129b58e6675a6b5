"""10 value_outlier: a direct award far above comparable purchases (same object class and modalidade)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.stats import excess_score, modified_z, quartile
from cidadao.redflags.text import cents, link, money, number

PEERS = ["object_class", "modalidade_id"]
KIND_NAMES = {8: "Dispensa", 9: "Inexigibilidade"}


@register
class ValueOutlier(Indicator):
    id = "value_outlier"
    version = "1"
    title = "Valor muito acima de compras comparáveis"
    description = (
        "Contratação direta cujo valor está muito acima das demais da mesma classe de objeto e modalidade: "
        "escore z modificado (mediana/MAD) acima de 3,5 ou acima da cerca de Tukey Q3 + 1,5·IQR, calculados "
        "sobre o logaritmo dos valores, e ao menos o dobro da mediana; grupos com menos de 20 compras "
        "não são avaliados."
    )
    legal_basis = None
    reference = (
        "Iglewicz & Hoaglin (1993), escore z modificado; Tukey (1977), cercas de Tukey, como nas regras "
        "do OCP Cardinal (Open Contracting Partnership)"
    )
    severity = Severity.MEDIUM
    scope = "global"
    defaults: ClassVar[Mapping[str, Any]] = {
        "z_threshold": 3.5,
        "tukey_k": 1.5,
        "min_peers": 20,
        "log_scale": True,
        "min_ratio_to_median": 2.0,
    }
    needs = ("modalidade_id", "object_class", "value")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        population = data.direct_awards
        usable = population.drop_nulls(["object_class", "value"]).filter(pl.col("value") > 0)
        # Values of purchases are roughly log-normal: on the log scale the fences mean "many times the usual".
        scaled = pl.col("value").log10() if params["log_scale"] else pl.col("value")
        q1, q3 = quartile(scaled, 0.25), quartile(scaled, 0.75)
        scored = usable.with_columns(
            pl.len().over(PEERS).alias("peers"),
            pl.col("value").median().over(PEERS).alias("peer_median"),
            modified_z(scaled).over(PEERS).alias("z"),
            (q3 - q1).over(PEERS).alias("iqr"),
            (q3 + params["tukey_k"] * (q3 - q1)).over(PEERS).alias("fence"),
        ).with_columns(
            pl.lit(10.0).pow(pl.col("fence")).alias("fence") if params["log_scale"] else pl.col("fence"),
            (pl.col("z") > params["z_threshold"]).fill_null(False).alias("by_z"),
            # An IQR of zero would make every value above Q3 an outlier: the fence needs some spread.
            ((scaled > pl.col("fence")) & (pl.col("iqr") > 0)).alias("by_tukey"),
        )
        flagged = scored.filter(
            (pl.col("peers") >= params["min_peers"])
            & (pl.col("by_z") | pl.col("by_tukey"))
            # Groups with almost no spread make tiny differences "significant": require a material excess.
            & (pl.col("value") >= params["min_ratio_to_median"] * pl.col("peer_median"))
        ).with_columns(
            excess_score(pl.col("z"), params["z_threshold"]).fill_null(0.5).clip(0.25, 1.0).alias("score")
        )
        groups = scored.group_by(PEERS).agg(pl.len().alias("n"))
        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={
                "groups": groups.height,
                "groups_evaluated": groups.filter(pl.col("n") >= params["min_peers"]).height,
            },
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        kind = KIND_NAMES.get(row["modalidade_id"], "Contratação")
        z = row["z"]
        criteria = ([f"escore z modificado {number(z, 1)}"] if row["by_z"] else []) + (
            [f"cerca de Tukey {money(row['fence'])}"] if row["by_tukey"] else []
        )
        message = (
            f"{kind} de {money(row['value'])} muito acima de {row['peers']} compras comparáveis da classe "
            f"{row['object_class']} (mediana {money(row['peer_median'])}; {', '.join(criteria)})"
        )
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(row["score"], 4),
            message=message,
            evidence={
                "value": cents(row["value"]),
                "peer_group": {"object_class": row["object_class"], "modalidade_id": row["modalidade_id"]},
                "peers": row["peers"],
                "peer_median": cents(row["peer_median"]),
                "modified_z": round(z, 2) if z is not None else None,
                "tukey_fence": cents(row["fence"]),
                "criteria": [name for name in ("by_z", "by_tukey") if row[name]],
                "threshold": {
                    "z_threshold": params["z_threshold"],
                    "tukey_k": params["tukey_k"],
                    "min_peers": params["min_peers"],
                    "log_scale": params["log_scale"],
                    "min_ratio_to_median": params["min_ratio_to_median"],
                },
                "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
