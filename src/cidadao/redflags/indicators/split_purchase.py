"""3 split_purchase: fracionamento, dispensas each under the limit that together reach it (art. 75 §1)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate, pairwise, repeat
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.limits import LAW, dispensas_by_value, limits_table
from cidadao.redflags.text import cents_expr, cents_int_expr, iso_expr, link_expr, money_expr

UNIT = ["buyer_cnpj", "unit_code", "limit_year", "inciso", "doubled"]
# What the rule reads of every dispensa under the limit; the rest of a record is read for flagged ones only.
UNDER_COLUMNS = [*UNIT, "value", "limit", "object_class", "contratacao_row"]
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
        # Which dispensas count, on the columns that decide it; the others are copied for those rows only.
        # Whether the unit is known is read for every contratação and gathered (no copy of the text).
        unit_known = data.contratacoes.select(
            pl.col("buyer_cnpj").is_not_null() & pl.col("unit_code").is_not_null()
        ).to_series()
        usable = pl.col("value").is_not_null() & pl.col("limit").is_not_null() & pl.col("unit_known")
        checked = (
            dispensas_by_value(data, params["doubled_cnpjs"], ["value", "limit", "contratacao_row"])
            .with_columns(pl.lit(unit_known).gather(pl.col("contratacao_row")).alias("unit_known"))
            .select(usable.alias("usable"), (usable & (pl.col("value") < pl.col("limit"))).alias("under"))
        )
        population, usable_count = checked.height, int(checked["usable"].sum())
        under = dispensas_by_value(data, params["doubled_cnpjs"], UNDER_COLUMNS, subset=checked["under"])
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
        findings = self._findings(data, under, groups)
        return RuleResult(
            findings=findings,
            skipped=population - usable_count,
            meta={
                "population": usable_count,
                "groups": groups.height,
                "min_records": params["min_records"],
                "ignored_classes": list(params["ignored_classes"]),
            },
        )

    @staticmethod
    def _supplied(data: Dataset, under: pl.DataFrame, keys: pl.DataFrame) -> pl.LazyFrame:
        """Per contrato with a supplier whose dispensa is in `under`: the dispensa's `row` in `under` with its
        `keys`, the `contrato` row and a hash of the supplier (the supplier itself is read only on the rows
        the preselection keeps).

        A contrato's dispensa is its contratação row as the dataset links them once for every rule (the
        first row with its control number), mapped to `under` by position: no join on the control number.
        """
        supplier = pl.col("supplier_id")
        return (
            data.contratos_enriched.lazy()
            .select(
                pl.int_range(pl.len(), dtype=pl.UInt32).alias("contrato"),
                data.purchase_among(under["contratacao_row"]).alias("row"),
                supplier,
            )
            .filter(pl.col("row").is_not_null() & supplier.is_not_null())
            .select(
                "row",
                "contrato",
                supplier.hash().alias("key_hash"),
                *(
                    pl.lit(keys[name]).gather(pl.col("row")).alias(name)
                    for name in ("unit_hash", "positive", "limit")
                ),
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
        )
        # Both natures are preselected in one go (in parallel), then each is made rows.
        preselected: dict[str, pl.LazyFrame] = {}
        if params["by_supplier"]:
            supplied = SplitPurchase._supplied(data, under, keys)
            preselected["supplier"] = may_flag(supplied, pl.col("key_hash")).select("row", "contrato")
        if params["by_object_class"]:
            classified = keys.lazy().filter(
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
            # Once per dispensa and supplier, however many contratos it has with that supplier.
            rows = pl.DataFrame(
                [pairs["row"], data.contratos["supplier_id"].gather(pairs["contrato"]).alias("key")]
            ).unique()
            parts.append(rows.select("row", pl.lit("supplier").alias("nature"), "key"))
        if "object_class" in found:
            parts.append(found["object_class"])
        return parts

    def _findings(self, data: Dataset, under: pl.DataFrame, groups: pl.DataFrame) -> list[Finding]:
        """One finding per record: the largest group it belongs to (supplier groups first on ties).

        The groups are put in that order of preference once and members are referred to by their row in
        `under` and their group's position in that order, so each record's group is its first row after a
        sort by record and position (no sort on the money, nature and key of every member row). Every
        member of a flagged group is itself flagged, so each record's evidence entry (number, value, date,
        link) is built once, as one dict shared by its own finding and by the member list of every group it
        belongs to; each group's member list and peer group are built once too. Text is formatted
        column-wise (the three frames in parallel) and findings are built from column lists, positionally.
        """
        ordered = groups.sort(["total", "nature", "key"], descending=[True, True, False])
        # The act that set the group's limit, by its year (in the table, since the group has a limit).
        acts = {row.year: row.act for row in limits_table()}
        ordered = ordered.with_columns(
            pl.col("limit_year").replace_strict(acts, default=None, return_dtype=pl.String).alias("act")
        )
        contratacoes, origin = data.contratacoes, under["contratacao_row"]
        exploded = ordered.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("group"), "row").explode(
            "row"
        )
        # By record, each record's groups in order of preference: its first row is its finding, and the
        # records' findings are numbered in that order. (Two sort keys are cheaper than a stable sort on one.)
        number = pl.col("control_number")
        first = number.ne_missing(number.shift(1))
        exploded = (
            exploded.with_columns(contratacoes["control_number"].gather(origin.gather(exploded["row"])))
            .sort("control_number", "group")
            .with_columns(first.alias("first"), (first.cum_sum() - 1).alias("finding"))
        )
        best = exploded.filter("first")
        if best.is_empty():
            return []
        # The used groups, each at its slot: the order in which records first use them. A record's groups are
        # of its unit, and its neighbours in record order are mostly of its buyer (PNCP control numbers start
        # with the buyer's CNPJ), so a group's Python objects are built and then read again by its findings
        # close together, while they are still in cache (~10 ms of ~80 for 32k findings).
        used = best["group"].unique(maintain_order=True)
        slot_of_group = pl.zeros(ordered.height, pl.UInt32(), eager=True).scatter(
            used, pl.int_range(used.len(), dtype=pl.UInt32, eager=True)
        )
        # The part of the message after the record's own value is the same for the whole group: formatted (and
        # made a Python string) once per group.
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
        # The used groups (by slot) with the parts their findings share.
        heads = (
            ordered[used]
            .lazy()
            .select(
                *UNIT,
                "nature",
                "key",
                "act",
                "count",
                cents_expr(pl.col("total")).alias("sum"),
                cents_expr(pl.col("limit")).alias("limit_cents"),
                # 0.6 at the limit, growing to 1.0 at twice the limit.
                (0.6 + 0.4 * (pl.col("total") / pl.col("limit") - 1.0).clip(upper_bound=1.0))
                .round(3)
                .alias("score"),
                suffix.alias("suffix"),
            )
        )
        # Member lists of the used groups (a group's list is as long as its count), in publication order (ties
        # by record), as findings' numbers.
        listed = exploded.filter(pl.col("group").is_in(used.implode()))
        members = (
            listed.lazy()
            .select(
                slot_of_group.gather(listed["group"]).alias("slot"),
                "finding",
                contratacoes["published_at"].gather(origin.gather(listed["row"])),
            )
            .sort(["slot", "published_at"], nulls_last=True, maintain_order=True)
            .select("finding")
        )
        own = (
            contratacoes.select("buyer_cnpj", "year", "sequence", "published_at")
            .gather(origin.gather(best["row"]))
            .with_columns(
                best["control_number"],
                slot_of_group.gather(best["group"]).alias("slot"),
                under["value"].gather(best["row"]),
            )
            .lazy()
            .select(
                "control_number",
                "slot",
                cents_expr(pl.col("value")).alias("value"),
                iso_expr(pl.col("published_at")).alias("published_at"),
                link_expr(
                    RecordKind.CONTRATACAO, pl.col("buyer_cnpj"), pl.col("year"), pl.col("sequence")
                ).alias("link"),
                money_expr(pl.col("value")).alias("money"),
            )
        )
        # The in-memory engine is faster than the streaming one on these small frames.
        heads_frame, members_frame, own_frame = pl.collect_all([heads, members, own], engine="in-memory")
        numbers, values, links = (own_frame[name].to_list() for name in ("control_number", "value", "link"))
        entries = [
            {"record": record, "value": value, "published_at": published_at, "link": link}
            for record, value, published_at, link in zip(
                numbers, values, own_frame["published_at"].to_list(), links, strict=True
            )
        ]
        member_entries = list(map(entries.__getitem__, members_frame["finding"].to_list()))
        head = {name: heads_frame[name].to_list() for name in heads_frame.columns}
        peer_groups = [
            {"buyer_cnpj": buyer_cnpj, "unit_code": unit_code, "year": year, "nature": nature, "key": key}
            for buyer_cnpj, unit_code, year, nature, key in zip(
                *(head[name] for name in ("buyer_cnpj", "unit_code", "limit_year", "nature", "key")),
                strict=True,
            )
        ]
        listed_records = [
            member_entries[start:end] for start, end in pairwise(accumulate(head["count"], initial=0))
        ]
        # Per used group: its findings' evidence with placeholders for a finding's own value and link (a copy
        # updated in place keeps the key order and is cheaper than a dict display), and citation.
        templates = [
            {
                "value": None,
                "sum": total_cents,
                "limit": limit_cents,
                "limit_year": limit_year,
                "inciso": inciso,
                "doubled": doubled,
                "act": act,
                "peer_group": peer_group,
                "records": records,
                "link": None,
            }
            for total_cents, limit_cents, limit_year, inciso, doubled, act, peer_group, records in zip(
                *(head[name] for name in ("sum", "limit_cents", "limit_year", "inciso", "doubled", "act")),
                peer_groups,
                listed_records,
                strict=True,
            )
        ]
        citation_of_act = {
            act: f"{LAW}, art. 75, §1º" + ("" if act == LAW else f"; {act}") for act in set(head["act"])
        }
        citations = [citation_of_act[act] for act in head["act"]]
        slots = own_frame["slot"].to_list()
        evidences = [
            template | {"value": value, "link": own_link}
            for template, value, own_link in zip(
                map(templates.__getitem__, slots), values, links, strict=True
            )
        ]
        return list(
            map(
                Finding,
                repeat(self.id),
                repeat(self.version),
                numbers,
                repeat(Severity.HIGH),
                map(head["score"].__getitem__, slots),
                [
                    f"Dispensa de {money}{suffix}"
                    for money, suffix in zip(
                        own_frame["money"].to_list(), map(head["suffix"].__getitem__, slots), strict=True
                    )
                ],
                evidences,
                map(citations.__getitem__, slots),
            )
        )
