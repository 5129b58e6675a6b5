"""13 year_end_rush: direct awards in the last days of December by a buyer whose December spending spikes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.stats import cents_sum, excess_score
from cidadao.redflags.text import cents, day, link, money, number

BUYER_YEAR = ["buyer_cnpj", "award_year"]


@register
class YearEndRush(Indicator):
    id = "year_end_rush"
    version = "1"
    title = "Corrida de fim de ano"
    description = (
        "Contratação direta publicada nos últimos 15 dias de dezembro por um órgão cujo valor em "
        "contratações diretas em dezembro é de ao menos 2 vezes a sua média mensal no ano (média sobre os "
        "meses cobertos pelos dados, a partir do primeiro registro do órgão)."
    )
    legal_basis = None
    reference = (
        "Liebman & Mahoney (2017), 'Do Expiring Budgets Lead to Wasteful Year-End Spending?', American "
        "Economic Review 107(11); Lei 4.320/1964, art. 35 (anualidade do orçamento)"
    )
    severity = Severity.LOW
    scope = "buyer"
    defaults: ClassVar[Mapping[str, Any]] = {"last_days": 15, "min_ratio": 2.0, "min_months": 3}
    needs = ("modalidade_id", "buyer_cnpj", "published_at", "value")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        published = pl.col("published_at")
        dated = [published.dt.year().alias("award_year"), published.dt.month().alias("month")]
        # The average is over the months the data covers for this buyer: those the data has at all, from the
        # buyer's first record on. A partial year, or a buyer new to the PNCP, is then no December spike.
        everything = data.contratacoes.drop_nulls(["buyer_cnpj", "published_at"])
        covered = everything.select(dated).unique()
        first_seen = everything.group_by("buyer_cnpj").agg(published.min().alias("first_seen"))
        population = data.direct_awards
        usable = population.drop_nulls(["buyer_cnpj", "published_at", "value"]).with_columns(dated)
        totals = usable.group_by(BUYER_YEAR).agg(
            cents_sum(pl.col("value")).alias("year_value"),
            cents_sum(pl.col("value").filter(pl.col("month") == 12)).alias("december_value"),
        )
        months = (
            totals.select(BUYER_YEAR)
            .join(first_seen, on="buyer_cnpj")
            .join(covered, on="award_year")
            .filter(
                (pl.col("first_seen").dt.year() < pl.col("award_year"))
                | (pl.col("month") >= pl.col("first_seen").dt.month())
            )
            .group_by(BUYER_YEAR)
            .agg(pl.len().alias("months"))
        )
        buyers = (
            totals.join(months, on=BUYER_YEAR)
            .with_columns((pl.col("year_value") / pl.col("months")).alias("monthly_average"))
            .with_columns((pl.col("december_value") / pl.col("monthly_average")).alias("ratio"))
        )
        rushing = buyers.filter(
            (pl.col("months") >= params["min_months"]) & (pl.col("ratio") >= params["min_ratio"])
        )
        first_day = 32 - params["last_days"]
        flagged = (
            usable.filter((pl.col("month") == 12) & (published.dt.day() >= first_day))
            .join(rushing, on=BUYER_YEAR)
            .with_columns(excess_score(pl.col("ratio"), params["min_ratio"]).alias("score"))
        )
        findings = [self._finding(row, params) for row in flagged.iter_rows(named=True)]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={"buyer_years": buyers.height, "rushing_buyer_years": rushing.height},
        )

    def _finding(self, row: dict[str, Any], params: Mapping[str, Any]) -> Finding:
        buyer = row["buyer_name"] or row["buyer_cnpj"]
        year = row["award_year"]
        message = (
            f"Contratação direta de {money(row['value'])} publicada em {day(row['published_at'])}, nos "
            f"últimos {params['last_days']} dias do ano, por {buyer}, cujo valor em contratações diretas em "
            f"dezembro ({money(row['december_value'])}) é {number(row['ratio'], 1)} vezes a média mensal "
            f"de {year} ({money(row['monthly_average'])})"
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
                "value": cents(row["value"]),
                "published_at": row["published_at"].isoformat(),
                "year": year,
                "december_value": cents(row["december_value"]),
                "year_value": cents(row["year_value"]),
                "months_covered": row["months"],
                "monthly_average": cents(row["monthly_average"]),
                "ratio": round(row["ratio"], 4),
                "threshold": {
                    "min_ratio": params["min_ratio"],
                    "last_days": params["last_days"],
                    "min_months": params["min_months"],
                },
                "peer_group": "contratações diretas do órgão no ano",
                "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
