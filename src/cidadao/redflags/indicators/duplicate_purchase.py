"""12 duplicate_purchase: a buyer buys again, from the same supplier or the same object, at ~the same value.

Pairs are found without comparing every record with every other: values go into log buckets as wide as the
tolerance and dates into buckets as wide as the window, so two records within both limits sit in the same or
adjacent buckets; only those candidates are compared exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import DIRECT_AWARD_MODALIDADES, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.objects import normalise_text
from cidadao.redflags.stats import RELATED_LIMIT
from cidadao.redflags.text import cents, day, iso, link, money

MATCH_TEXT = {"supplier": "com o mesmo fornecedor", "object": "com o mesmo objeto"}
CELL_ROW = 1 << 32  # value bucket step in the combined (value bucket, day bucket) key
PARTNER_FIELDS = ("control_number", "value", "event_day")
COLUMNS = (
    "control_number",
    "modalidade_id",
    "buyer_cnpj",
    "supplier_id",
    "object",
    "value",
    "year",
    "sequence",
)


def duplicate_pairs(frame: pl.DataFrame, keys: list[str], tolerance: float, window: int) -> pl.DataFrame:
    """(row, partner) index pairs of `frame` rows with equal `keys`, `value` within `tolerance` of the larger
    one and `day` (days since epoch) at most `window` days apart; both directions of each pair."""
    width = -math.log(1 - tolerance)  # max/min <= 1/(1 - tolerance) => log buckets at most 1 apart
    # Most (buyer, key) groups have one record: only groups of two or more can hold a pair.
    base = frame.filter(pl.len().over(keys) > 1).select(
        "row",
        *keys,
        "value",
        "day",
        # (value bucket, day bucket) as one join key; day buckets stay far below 2**31 in magnitude.
        (
            (pl.col("value").log() / width).floor().cast(pl.Int64) * CELL_ROW + pl.col("day") // (window + 1)
        ).alias("cell"),
    )
    # One join per neighbouring bucket, each filtered before the next: a single join of all six shifted
    # copies (3M rows for the contratações of a million records) held ~0.5 GiB at once.
    within = (
        (pl.col("row") != pl.col("row_other"))
        & (
            (pl.col("value") - pl.col("value_other")).abs()
            <= tolerance * pl.max_horizontal("value", "value_other")
        )
        & ((pl.col("day") - pl.col("day_other")).abs() <= window)
    )
    matched = pl.concat(
        [
            base.with_columns(pl.col("cell") + (dv * CELL_ROW + dd))
            .join(base, on=[*keys, "cell"], suffix="_other")
            .filter(within)
            .select("row", pl.col("row_other").alias("partner"))
            for dv in (0, 1)
            for dd in (-1, 0, 1)
        ]
    )
    swapped = matched.select(pl.col("partner").alias("row"), pl.col("row").alias("partner"))
    return pl.concat([matched, swapped]).unique()


def same_object(usable: pl.DataFrame, pairs: pl.DataFrame, params: Mapping[str, Any]) -> pl.DataFrame:
    """The `pairs` (same buyer, value and date close) whose normalised objects are equal and long enough.

    Normalising free text is the costly step, so it runs only on the records of candidate pairs.
    """
    involved = usable.join(pairs.select("row").unique(), on="row", how="semi")
    keys = involved.select("row", normalise_text(pl.col("object")).alias("key")).filter(
        pl.col("key").str.len_chars() >= params["min_object_length"]
    )
    return (
        pairs.join(keys, on="row")
        .join(keys.rename({"row": "partner", "key": "partner_key"}), on="partner")
        .filter(pl.col("key") == pl.col("partner_key"))
        .select("row", "partner")
    )


@register
class DuplicatePurchase(Indicator):
    id = "duplicate_purchase"
    version = "1"
    title = "Contratação direta em duplicidade"
    description = (
        "O mesmo órgão faz duas contratações diretas com o mesmo fornecedor (contratos) ou com o mesmo "
        "objeto (contratações, texto normalizado) de valores com diferença de até 1 %, em até 30 dias uma "
        "da outra."
    )
    legal_basis = "Lei 14.133/2021, art. 75, §1º (somatório das despesas de mesma natureza)"
    reference = (
        "Open Contracting Partnership, Red Flags for Integrity (2016): contratações repetidas e "
        "fracionamento; Lei 14.133/2021, art. 75, §1º"
    )
    severity = Severity.MEDIUM
    scope = "buyer"
    defaults: ClassVar[Mapping[str, Any]] = {"tolerance": 0.01, "window_days": 30, "min_object_length": 10}
    needs = ("modalidade_id", "buyer_cnpj", "supplier_id", "object", "value", "signed_at", "published_at")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        tolerance, window = params["tolerance"], params["window_days"]
        # Only the columns pairs and findings read: filtering the wide frames would copy all of them.
        contratos = data.contratos_enriched.select(
            *COLUMNS, pl.col("signed_at").alias("event_day"), pl.col("supplier_id").alias("match_key")
        ).filter(pl.col("modalidade_id").is_in(DIRECT_AWARD_MODALIDADES) | pl.col("modalidade_id").is_null())
        contratacoes = data.direct_awards.select(
            *COLUMNS, pl.col("published_at").dt.date().alias("event_day"), pl.col("object").alias("match_key")
        )
        findings: list[Finding] = []
        skipped = 0
        pairs_found: dict[str, int] = {}
        for match, kind, frame in (
            ("supplier", RecordKind.CONTRATO, contratos),
            ("object", RecordKind.CONTRATACAO, contratacoes),
        ):
            required = ["modalidade_id", "buyer_cnpj", "match_key", "value", "event_day"]
            usable = frame.drop_nulls(required).filter(pl.col("value") > 0)
            skipped += frame.height - usable.height
            usable = usable.with_row_index("row").with_columns(
                pl.col("event_day").cast(pl.Int64).alias("day")
            )
            if match == "supplier":
                pairs = duplicate_pairs(usable, ["buyer_cnpj", "match_key"], tolerance, window)
            else:
                pairs = same_object(
                    usable, duplicate_pairs(usable, ["buyer_cnpj"], tolerance, window), params
                )
            pairs_found[match] = pairs.height // 2
            findings.extend(self._findings(usable, pairs, match, kind, params))
        return RuleResult(findings=findings, skipped=skipped, meta={"pairs": pairs_found})

    def _findings(
        self,
        usable: pl.DataFrame,
        pairs: pl.DataFrame,
        match: str,
        kind: RecordKind,
        params: Mapping[str, Any],
    ) -> list[Finding]:
        partners = (
            pairs.join(usable.select(pl.col("row").alias("partner"), *PARTNER_FIELDS), on="partner")
            .join(usable.select("row", pl.col("value").alias("own_value")), on="row")
            .with_columns(
                (
                    (pl.col("value") - pl.col("own_value")).abs() / pl.max_horizontal("value", "own_value")
                ).alias("difference")
            )
            .sort("row", "difference", "event_day", "control_number")
            .group_by("row")
            .agg(
                pl.len().alias("partners"),
                pl.col("difference").first().alias("closest_difference"),
                pl.struct(*PARTNER_FIELDS).head(RELATED_LIMIT).alias("related"),
            )
        )
        flagged = usable.join(partners, on="row")
        return [self._finding(row, match, kind, params) for row in flagged.iter_rows(named=True)]

    def _finding(
        self, row: dict[str, Any], match: str, kind: RecordKind, params: Mapping[str, Any]
    ) -> Finding:
        related = row["related"]
        closest = related[0]
        others = f" e outras {row['partners'] - 1}" if row["partners"] > 1 else ""
        noun = "Contrato" if kind is RecordKind.CONTRATO else "Contratação direta"
        message = (
            f"{noun} de {money(row['value'])} em {day(row['event_day'])} tem valor e data próximos de outra "
            f"do mesmo órgão {MATCH_TEXT[match]}: {money(closest['value'])} em {day(closest['event_day'])} "
            f"({closest['control_number']}){others}"
        )
        tolerance = params["tolerance"]
        return Finding(
            rule=self.id,
            rule_version=self.version,
            record=row["control_number"],
            severity=self.severity,
            score=round(1 - 0.5 * min(1.0, row["closest_difference"] / tolerance), 4),
            message=message,
            evidence={
                "match": match,
                "buyer_cnpj": row["buyer_cnpj"],
                "supplier_id": row["supplier_id"],
                "object": row["object"],
                "value": cents(row["value"]),
                "date": iso(row["event_day"]),
                "related_records": [
                    {
                        "record": item["control_number"],
                        "value": cents(item["value"]),
                        "date": iso(item["event_day"]),
                        "difference": round(
                            abs(item["value"] - row["value"]) / max(item["value"], row["value"]), 6
                        ),
                    }
                    for item in related
                ],
                "related_total": row["partners"],
                "threshold": {"tolerance": tolerance, "window_days": params["window_days"]},
                "peer_group": f"contratações diretas do mesmo órgão {MATCH_TEXT[match]}",
                "link": link(kind, row["buyer_cnpj"], row["year"], row["sequence"]),
            },
            legal_basis=self.legal_basis,
        )
