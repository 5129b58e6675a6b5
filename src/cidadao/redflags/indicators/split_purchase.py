"""3 split_purchase: fracionamento, dispensas each under the limit that together reach it (art. 75 §1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import LAW, dispensas_by_value
from cidadao.redflags.text import cents_expr, cents_int_expr, iso_expr, link_expr, money_expr

UNIT = ["buyer_cnpj", "unit_code", "limit_year", "inciso", "doubled"]
MEMBER_COLUMNS = [*UNIT, "control_number", "value", "year", "sequence", "published_at", "limit", "act"]
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
        population = dispensas_by_value(data, params["doubled_cnpjs"], [*MEMBER_COLUMNS, "object_class"])
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
        findings = self._findings(groups)
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
        """One row per (dispensa, nature of grouping): supplier (from its contratos) and object class.

        When a group needs two or more records, only rows that may share their group are kept: most (unit,
        nature, key) combinations hold a single dispensa, and a row whose combination hashes to a value no
        other row has is alone in its group. The hash only preselects (equal keys hash alike); the grouping
        compares the key columns themselves, on a fraction of the rows.
        """
        singles = params["min_records"] < 2

        def may_share(key: pl.Expr) -> pl.Expr:
            return pl.lit(True) if singles else (pl.col("unit_hash") ^ key.hash()).is_duplicated()

        keys = under.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            "control_number",
            pl.struct(UNIT).hash().alias("unit_hash"),
            "object_class",
        )
        columns = under.select(MEMBER_COLUMNS)
        parts = []
        if params["by_supplier"]:
            suppliers = data.contratos.select(
                pl.col("purchase_control_number").alias("control_number"),
                pl.col("supplier_id").alias("key"),
            ).drop_nulls()
            # Joined on the key columns and made unique after: the dispensas under the limit are few of all
            # contratos, and a pair repeated by several contratos shares its hash, so it is still there.
            rows = (
                keys.join(suppliers, on="control_number", how="inner")
                .filter(may_share(pl.col("key")))
                .unique(["control_number", "key"])
            )
            parts.append(columns[rows["row"]].with_columns(pl.lit("supplier").alias("nature"), rows["key"]))
        if params["by_object_class"]:
            rows = keys.filter(
                pl.col("object_class").is_not_null()
                & ~pl.col("object_class").is_in(list(params["ignored_classes"]))
                & may_share(pl.col("object_class"))
            )
            parts.append(
                columns[rows["row"]].with_columns(
                    pl.lit("object_class").alias("nature"), rows["object_class"].alias("key")
                )
            )
        return parts

    def _findings(self, groups: pl.DataFrame) -> list[Finding]:
        """One finding per record: the largest group it belongs to (supplier groups first on ties).

        Messages, money and links are formatted column-wise; each group's member list and peer group are built
        once and the same objects go into the evidence of every finding that uses that group.
        """
        # The part of the message after the record's own value is the same for the whole group.
        suffix = pl.concat_str(
            pl.lit(" é uma de "),
            pl.col("count"),
            pl.lit(" dispensas da mesma unidade em "),
            pl.col("limit_year"),
            pl.lit(" "),
            pl.col("nature").replace_strict(NATURE_LABEL, return_dtype=pl.String),
            pl.lit(" que somam "),
            money_expr(pl.col("total")),
            pl.lit(", "),
            pl.when(cents_int_expr(pl.col("total")) == cents_int_expr(pl.col("limit")))
            .then(pl.lit("igual ao"))
            .otherwise(pl.lit("acima do")),
            pl.lit(" limite de "),
            money_expr(pl.col("limit")),
            pl.lit(" ("),
            pl.lit(f"{LAW}, art. 75, §1º"),
            pl.when(pl.col("act") == LAW).then(pl.lit("")).otherwise(pl.lit("; ") + pl.col("act")),
            pl.lit(")"),
        )
        rows = (
            groups.with_row_index("group")
            .with_columns(suffix.alias("suffix"))
            .explode("control_number", "value", "year", "sequence", "published_at")
        )
        best = (
            rows.sort(["control_number", "total", "nature", "key"], descending=[False, True, True, False])
            .unique("control_number", keep="first", maintain_order=True)
            .select(
                "control_number",
                "group",
                cents_expr(pl.col("value")).alias("own_value"),
                link_expr(
                    RecordKind.CONTRATACAO, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")
                ).alias("link"),
                pl.concat_str(pl.lit("Dispensa de "), money_expr(pl.col("value")), pl.col("suffix")).alias(
                    "message"
                ),
            )
        )
        used = best["group"].unique()
        members = (
            rows.filter(pl.col("group").is_in(used.implode()))
            .sort(["group", "published_at", "control_number"], nulls_last=True)
            .group_by("group", maintain_order=True)
            .agg(
                pl.struct(
                    pl.col("control_number").alias("record"),
                    cents_expr(pl.col("value")).alias("value"),
                    iso_expr(pl.col("published_at")).alias("published_at"),
                    link_expr(
                        RecordKind.CONTRATACAO, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")
                    ).alias("link"),
                ).alias("records")
            )
        )
        records = dict(zip(members["group"].to_list(), members["records"].to_list(), strict=True))
        # Per group: score, citation and the evidence every finding of the group shares (in evidence order).
        shared = {}
        for index, *unit, nature, key, limit, act, total, total_cents, limit_cents in (
            groups.select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias("group"),
                *UNIT,
                "nature",
                "key",
                "limit",
                "act",
                "total",
                cents_expr(pl.col("total")).alias("sum"),
                cents_expr(pl.col("limit")).alias("limit_cents"),
            )
            .filter(pl.col("group").is_in(used.implode()))
            .iter_rows()
        ):
            buyer_cnpj, unit_code, limit_year, inciso, doubled = unit
            shared[index] = (
                round(min(1.0, 0.6 + 0.4 * min(1.0, total / limit - 1.0)), 3),
                f"{LAW}, art. 75, §1º" + ("" if act == LAW else f"; {act}"),
                {
                    "sum": total_cents,
                    "limit": limit_cents,
                    "limit_year": limit_year,
                    "inciso": inciso,
                    "doubled": doubled,
                    "act": act,
                    "peer_group": {
                        "buyer_cnpj": buyer_cnpj,
                        "unit_code": unit_code,
                        "year": limit_year,
                        "nature": nature,
                        "key": key,
                    },
                    "records": records[index],
                },
            )
        findings = []
        rule, version, high = self.id, self.version, Severity.HIGH
        for record, index, value, own_link, message in best.iter_rows():
            score, citation, evidence = shared[index]
            findings.append(
                Finding(
                    rule=rule,
                    rule_version=version,
                    record=record,
                    severity=high,
                    score=score,
                    message=message,
                    evidence={"value": value, **evidence, "link": own_link},
                    legal_basis=citation,
                )
            )
        return findings
