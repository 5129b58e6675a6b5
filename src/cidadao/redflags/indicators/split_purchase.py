"""3 split_purchase: fracionamento, dispensas each under the limit that together reach it (art. 75 §1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import LAW, dispensas_by_value
from cidadao.redflags.text import cents, link, money

UNIT = ["buyer_cnpj", "unit_code", "limit_year", "inciso", "doubled"]
NATURE_LABEL = {"supplier": "para o mesmo fornecedor", "object_class": "com objeto da mesma classe"}


@register
class SplitPurchase(Indicator):
    id = "split_purchase"
    version = "1"
    title = "Possível fracionamento de despesa"
    description = (
        "Dispensas por valor de uma mesma unidade compradora no mesmo ano, cada uma abaixo do limite, que "
        "somadas atingem ou superam o limite, para o mesmo fornecedor ou para objetos da mesma classe; todas "
        "as dispensas do grupo são sinalizadas."
    )
    legal_basis = "Lei 14.133/2021, art. 75, §1º"
    reference = "Lei 14.133/2021, art. 75, §1º (somatório no exercício financeiro, por unidade gestora)"
    severity = Severity.HIGH
    scope = "buyer"
    defaults: ClassVar[Mapping[str, Any]] = {
        "min_records": 2,
        "by_supplier": True,
        "by_object_class": True,
        "ignored_classes": ["outros"],
        "doubled_cnpjs": [],
    }
    needs = (
        "modalidade_id",
        "amparo_name",
        "amparo_code",
        "buyer_cnpj",
        "unit_code",
        "value",
        "published_at",
        "object_class",
        "supplier_id",
    )

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        population = dispensas_by_value(data, params["doubled_cnpjs"])
        usable = population.filter(
            pl.all_horizontal(
                pl.col(name).is_not_null() for name in ("value", "limit", "buyer_cnpj", "unit_code")
            )
        )
        under = usable.filter(pl.col("value") < pl.col("limit"))
        parts = self._members(data, under, params)
        if not parts:
            raise ValueError("split_purchase needs by_supplier or by_object_class enabled")
        groups = (
            pl.concat(parts)
            .group_by([*UNIT, "nature", "key"])
            .agg(
                pl.col("control_number"),
                pl.col("value"),
                pl.col("year"),
                pl.col("sequence"),
                pl.col("published_at"),
                pl.col("limit").first(),
                pl.col("act").first(),
                pl.col("value").sum().round(2).alias("total"),
                pl.len().alias("count"),
            )
            .filter((pl.col("count") >= params["min_records"]) & (pl.col("total") >= pl.col("limit")))
        )
        # One finding per record: the largest group it belongs to (supplier groups first on ties).
        best: dict[str, dict[str, Any]] = {}
        ordered = groups.sort(["total", "nature", "key"], descending=[True, True, False])
        for group in ordered.iter_rows(named=True):
            group["members"] = None  # evidence list, built once per group on first use
            for record in group["control_number"]:
                best.setdefault(record, group)
        findings = [self._finding(record, group) for record, group in sorted(best.items())]
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={
                "population": usable.height,
                "groups": groups.height,
                "min_records": params["min_records"],
                "ignored_classes": list(params["ignored_classes"]),
            },
        )

    @staticmethod
    def _members(data: Dataset, under: pl.DataFrame, params: Mapping[str, Any]) -> list[pl.DataFrame]:
        """One row per (dispensa, nature of grouping): supplier (from its contratos) and object class."""
        columns = [*UNIT, "control_number", "value", "year", "sequence", "published_at", "limit", "act"]
        parts = []
        if params["by_supplier"]:
            suppliers = (
                data.contratos.select(
                    pl.col("purchase_control_number").alias("control_number"),
                    pl.col("supplier_id").alias("key"),
                )
                .drop_nulls()
                .unique()
            )
            parts.append(
                under.join(suppliers, on="control_number", how="inner").select(
                    *columns, pl.lit("supplier").alias("nature"), "key"
                )
            )
        if params["by_object_class"]:
            classes = under.filter(
                pl.col("object_class").is_not_null()
                & ~pl.col("object_class").is_in(list(params["ignored_classes"]))
            )
            parts.append(
                classes.select(
                    *columns, pl.lit("object_class").alias("nature"), pl.col("object_class").alias("key")
                )
            )
        return parts

    @staticmethod
    def _members_evidence(group: dict[str, Any]) -> list[dict[str, Any]]:
        """Every dispensa of the group in publication order, with value and PNCP link."""
        rows = sorted(
            zip(
                group["control_number"],
                group["value"],
                group["year"],
                group["sequence"],
                group["published_at"],
                strict=True,
            ),
            key=lambda row: (row[4] is None, row[4], row[0]),
        )
        return [
            {
                "record": control,
                "value": cents(amount),
                "published_at": None if published is None else published.isoformat(),
                "link": link(RecordKind.CONTRATACAO, group["buyer_cnpj"], year, sequence),
            }
            for control, amount, year, sequence, published in rows
        ]

    def _finding(self, record: str, group: dict[str, Any]) -> Finding:
        if group["members"] is None:
            evidence = self._members_evidence(group)
            group["members"] = evidence
            group["by_record"] = {member["record"]: member for member in evidence}
        members: list[dict[str, Any]] = group["members"]
        own = group["by_record"][record]
        value = own["value"]
        citation = f"{LAW}, art. 75, §1º" + ("" if group["act"] == LAW else f"; {group['act']}")
        nature = NATURE_LABEL[group["nature"]]
        total, limit = group["total"], group["limit"]
        relation = "igual ao" if cents(total) == cents(limit) else "acima do"
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=record,
            severity=Severity.HIGH,
            score=round(min(1.0, 0.6 + 0.4 * min(1.0, total / limit - 1.0)), 3),
            message=(
                f"Dispensa de {money(value)} é uma de {group['count']} dispensas da mesma unidade em "
                f"{group['limit_year']} {nature} que somam {money(total)}, {relation} limite de "
                f"{money(limit)} ({citation})"
            ),
            evidence={
                "value": cents(value),
                "sum": cents(total),
                "limit": cents(limit),
                "limit_year": group["limit_year"],
                "inciso": group["inciso"],
                "doubled": group["doubled"],
                "act": group["act"],
                "peer_group": {
                    "buyer_cnpj": group["buyer_cnpj"],
                    "unit_code": group["unit_code"],
                    "year": group["limit_year"],
                    "nature": group["nature"],
                    "key": group["key"],
                },
                "records": members,
                "link": own["link"],
            },
            legal_basis=citation,
        )
