"""3 split_purchase: fracionamento, dispensas each under the limit that together reach it (art. 75 §1)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
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
        usable = pl.all_horizontal(
            pl.col(name).is_not_null() for name in ("value", "limit", "buyer_cnpj", "unit_code")
        )
        usable_count = population.select(usable.sum()).item()
        under = population.filter(usable & (pl.col("value") < pl.col("limit")))
        parts = self._members(data, under, params)
        if not parts:
            raise ValueError("split_purchase needs by_supplier or by_object_class enabled")
        members = pl.concat(parts)
        # Grouped on the unit columns of each member (gathered by its row in `under`), nature and key; a group
        # keeps its members as rows of `under`.
        groups = (
            under.select(*UNIT, "value", "limit")[members["row"]]
            .with_columns(members)
            .group_by([*UNIT, "nature", "key"])
            .agg(
                pl.col("row"),
                pl.col("limit").first(),
                pl.col("value").sum().round(2).alias("total"),
                pl.len().alias("count"),
            )
            .filter((pl.col("count") >= params["min_records"]) & (pl.col("total") >= pl.col("limit")))
        )
        findings = self._findings(under, groups)
        return RuleResult(
            findings=findings,
            skipped=population.height - usable_count,
            meta={
                "population": usable_count,
                "groups": groups.height,
                "min_records": params["min_records"],
                "ignored_classes": list(params["ignored_classes"]),
            },
        )

    @staticmethod
    def _supplier_hashes(data: Dataset) -> pl.LazyFrame:
        """Per contrato with a contratação and a supplier: its `contrato` row, and hashes of both.

        Dispensas and their contratos are matched on hashes of the control number (cheaper to join than the
        text) and the supplier is hashed once per contrato; the text of both is compared, and the supplier
        read, only on the rows the preselection keeps. A false match by hash only adds rows there (it never
        hides a true pair from the preselection), and the comparison drops it.
        """
        return (
            data.contratos.lazy()
            .select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias("contrato"),
                "purchase_control_number",
                "supplier_id",
            )
            .drop_nulls()
            .select(
                "contrato",
                pl.col("purchase_control_number").hash().alias("number_hash"),
                pl.col("supplier_id").hash().alias("key_hash"),
            )
        )

    @staticmethod
    def _members(data: Dataset, under: pl.DataFrame, params: Mapping[str, Any]) -> list[pl.DataFrame]:
        """One row per (dispensa, nature of grouping): supplier (from its contratos) and object class, as the
        dispensa's `row` in `under`, `nature` and `key`.

        Only rows that may be in a flagged group are kept: most (unit, nature, key) combinations hold a single
        dispensa, or too little money. Rows are first grouped by a hash of their combination: equal
        combinations hash alike, so a row's group is part of its hash group, which has at least as many rows
        and at least the sum of the group's positive values; a row whose hash group falls short of the count
        or of its limit is in no flagged group. The hash only preselects; the grouping compares the key
        columns themselves, on a fraction of the rows.
        """

        def may_flag(rows: pl.LazyFrame, key_hash: pl.Expr) -> pl.LazyFrame:
            combination = pl.col("combination")
            # A cent of margin covers the rounding of the group's sum to cents (and float sums in any order).
            return rows.with_columns((pl.col("unit_hash") ^ key_hash).alias("combination")).filter(
                (pl.len().over(combination) >= int(params["min_records"]))
                & (pl.col("positive").sum().over(combination) >= pl.col("limit") - 0.01)
            )

        keys = under.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            under.select(UNIT).hash_rows().alias("unit_hash"),
            pl.col("value").clip(lower_bound=0).alias("positive"),
            "limit",
            "object_class",
        ).lazy()
        # Both natures are preselected in one go (in parallel), then each is checked and made rows.
        preselected: dict[str, pl.LazyFrame] = {}
        contratos = data.contratos
        if params["by_supplier"]:
            suppliers = SplitPurchase._supplier_hashes(data)
            joined = keys.select(
                "row", "unit_hash", "positive", "limit", under["control_number"].hash().alias("number_hash")
            ).join(suppliers, on="number_hash", how="inner", maintain_order="none")
            preselected["supplier"] = may_flag(joined, pl.col("key_hash")).select("row", "contrato")
        if params["by_object_class"]:
            classified = keys.filter(
                pl.col("object_class").is_not_null()
                & ~pl.col("object_class").is_in(list(params["ignored_classes"]))
            )
            preselected["object_class"] = may_flag(classified, pl.col("object_class").hash()).select(
                "row", pl.lit("object_class").alias("nature"), pl.col("object_class").alias("key")
            )
        found = dict(zip(preselected, pl.collect_all(preselected.values()), strict=True))
        parts = []
        if "supplier" in found:
            pairs = found["supplier"]
            number = under["control_number"].gather(pairs["row"])
            # Made unique after: a pair repeated by several contratos shares its hash, so it is still there.
            rows = (
                pl.DataFrame(
                    [
                        pairs["row"],
                        number.alias("control_number"),
                        contratos["supplier_id"].gather(pairs["contrato"]).alias("key"),
                    ]
                )
                .filter(number == contratos["purchase_control_number"].gather(pairs["contrato"]))
                .unique(["control_number", "key"])
            )
            parts.append(rows.select("row", pl.lit("supplier").alias("nature"), "key"))
        if "object_class" in found:
            parts.append(found["object_class"])
        return parts

    def _findings(self, under: pl.DataFrame, groups: pl.DataFrame) -> list[Finding]:
        """One finding per record: the largest group it belongs to (supplier groups first on ties).

        The groups are put in that order of preference once and members are referred to by their row in
        `under` and their group's position in that order, so each record's group is its first row after a
        stable sort by record (no sort on the money, nature and key of every member row). Messages, money and
        links are formatted column-wise (the three frames of formatted text in parallel); each group's member
        list and peer group are built once and the same objects go into the evidence of every finding that
        uses that group. Findings are built from column lists, positionally.
        """
        ordered = groups.sort(["total", "nature", "key"], descending=[True, True, False])
        # The act of a group's limit, of its first member (the same for all: it follows the limit year).
        ordered = ordered.with_columns(under["act"].gather(ordered["row"].list.first()).alias("act"))
        exploded = ordered.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("group"), "row").explode(
            "row"
        )
        # By record, each record's groups in order of preference (stable sort): its first row is its finding.
        exploded = exploded.with_columns(under["control_number"].gather(exploded["row"])).sort(
            "control_number", maintain_order=True
        )
        number = pl.col("control_number")
        best = exploded.filter(number.ne_missing(number.shift(1)))
        if best.is_empty():
            return []
        used = best["group"].unique().implode()
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
        # The used groups (in group order) with the parts their findings share.
        heads = (
            ordered.lazy()
            .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("group"))
            .filter(pl.col("group").is_in(used))
            .select(
                "group",
                *UNIT,
                "nature",
                "key",
                "limit",
                "act",
                "total",
                cents_expr(pl.col("total")).alias("sum"),
                cents_expr(pl.col("limit")).alias("limit_cents"),
            )
        )
        # Member lists of the used groups, in publication order: consecutive rows per group.
        listed = exploded.filter(pl.col("group").is_in(used))
        members = (
            under.select("value", "year", "sequence", "published_at", "buyer_cnpj")
            .gather(listed["row"])
            .with_columns(listed["group"], listed["control_number"])
            .lazy()
            .sort(["group", "published_at"], nulls_last=True, maintain_order=True)  # ties by record
            .select(
                "group",
                "control_number",
                cents_expr(pl.col("value")).alias("value"),
                iso_expr(pl.col("published_at")).alias("published_at"),
                link_expr(
                    RecordKind.CONTRATACAO, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")
                ).alias("link"),
            )
        )
        own = (
            under.select("value", "buyer_cnpj", "year", "sequence")
            .gather(best["row"])
            .with_columns(suffix=ordered.select(suffix).to_series().gather(best["group"]))
            .lazy()
            .select(
                cents_expr(pl.col("value")).alias("value"),
                link_expr(
                    RecordKind.CONTRATACAO, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")
                ).alias("link"),
                pl.concat_str(pl.lit("Dispensa de "), money_expr(pl.col("value")), pl.col("suffix")).alias(
                    "message"
                ),
            )
        )
        heads_frame, members_frame, own_frame = pl.collect_all([heads, members, own])
        records = [
            {"record": record, "value": value, "published_at": published_at, "link": link}
            for record, value, published_at, link in zip(
                *(
                    members_frame[name].to_list()
                    for name in ("control_number", "value", "published_at", "link")
                ),
                strict=True,
            )
        ]
        sizes = members_frame.select(pl.col("group").rle().struct.field("len")).to_series().to_list()
        # Per group: score, citation and the evidence its findings share (in evidence order).
        scores: list[float] = [0.0] * ordered.height
        citations = [""] * ordered.height
        shared: list[tuple[Any, ...]] = [()] * ordered.height
        start = 0
        for (
            index, buyer_cnpj, unit_code, limit_year, inciso, doubled, nature, key, limit, act, total,
            total_cents, limit_cents, size,
        ) in zip(*(column.to_list() for column in heads_frame), sizes, strict=True):  # fmt: skip
            scores[index] = round(min(1.0, 0.6 + 0.4 * min(1.0, total / limit - 1.0)), 3)
            citations[index] = f"{LAW}, art. 75, §1º" + ("" if act == LAW else f"; {act}")
            shared[index] = (
                total_cents,
                limit_cents,
                limit_year,
                inciso,
                doubled,
                act,
                {
                    "buyer_cnpj": buyer_cnpj,
                    "unit_code": unit_code,
                    "year": limit_year,
                    "nature": nature,
                    "key": key,
                },
                records[start : start + size],
            )
            start += size
        indexes = best["group"].to_list()
        # Each finding's evidence: its own value and link around its group's shared parts (a dict display,
        # cheaper than merging a shared dict into a new one).
        evidences = [
            {
                "value": value,
                "sum": group[0],
                "limit": group[1],
                "limit_year": group[2],
                "inciso": group[3],
                "doubled": group[4],
                "act": group[5],
                "peer_group": group[6],
                "records": group[7],
                "link": own_link,
            }
            for group, value, own_link in zip(
                map(shared.__getitem__, indexes),
                own_frame["value"].to_list(),
                own_frame["link"].to_list(),
                strict=True,
            )
        ]
        return list(
            map(
                Finding,
                repeat(self.id),
                repeat(self.version),
                best["control_number"].to_list(),
                repeat(Severity.HIGH),
                [scores[index] for index in indexes],
                own_frame["message"].to_list(),
                evidences,
                [citations[index] for index in indexes],
            )
        )
