"""4 short_notice: dispensa with a proposal window under 3 business days (art. 75 §3)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, ClassVar

import polars as pl

from cidadao.domain.records import MODALIDADE_DISPENSA, Finding, RecordKind, Severity
from cidadao.redflags.base import Dataset, Indicator, RuleResult, register
from cidadao.redflags.holidays import business_days_after, holidays_between
from cidadao.redflags.limits import with_inciso
from cidadao.redflags.text import day, link

LEGAL_BASIS = "Lei 14.133/2021, art. 75, §3º"


@register
class ShortNotice(Indicator):
    id = "short_notice"
    version = "1"
    title = "Prazo de propostas da dispensa menor que 3 dias úteis"
    description = (
        "Dispensa com aviso de contratação direta cujo prazo para propostas (da abertura ao encerramento) "
        "tem menos de 3 dias úteis, contados excluindo o dia da abertura e incluindo o do encerramento, "
        "descontados fins de semana e feriados nacionais."
    )
    legal_basis = LEGAL_BASIS
    reference = "Lei 14.133/2021, art. 75, §3º e art. 183 (contagem de prazos)"
    severity = Severity.MEDIUM
    scope = "record"
    defaults: ClassVar[Mapping[str, Any]] = {"min_business_days": 3}
    needs = ("modalidade_id", "amparo_name", "amparo_code", "proposal_open_at", "proposal_close_at")

    def run(self, data: Dataset, params: Mapping[str, Any]) -> RuleResult:
        minimum = int(params["min_business_days"])
        # §3 concerns dispensas by value (incisos I and II); an unknown inciso is kept, other incisos are not.
        # Only the columns findings read: filtering the wide frame would copy all of them.
        dispensas = with_inciso(
            data.contratacoes.select(
                "control_number",
                "modalidade_id",
                "amparo_name",
                "amparo_code",
                "proposal_open_at",
                "proposal_close_at",
                "buyer_cnpj",
                "year",
                "sequence",
            ).filter(pl.col("modalidade_id") == MODALIDADE_DISPENSA)
        )
        population = dispensas.filter(pl.col("inciso").is_in(["I", "II"]) | pl.col("inciso").is_null())
        opened, closed = pl.col("proposal_open_at").dt.date(), pl.col("proposal_close_at").dt.date()
        # Equal open and close instants mean no proposal phase (sem disputa), not a short one.
        window = pl.col("proposal_close_at") > pl.col("proposal_open_at")
        usable = population.filter(opened.is_not_null() & closed.is_not_null() & window)
        years = usable.select(opened.dt.year().min().alias("first"), closed.dt.year().max().alias("last"))
        first, last = years.row(0) if usable.height else (None, None)
        holidays = holidays_between(first, last) if first is not None and last is not None else []
        short = usable.with_columns(
            business_days_after(opened, closed, holidays).alias("business_days"),
            opened.alias("open_date"),
            closed.alias("close_date"),
        ).filter(pl.col("business_days") < minimum)
        findings = []
        for row in short.iter_rows(named=True):
            start: date = row["open_date"]
            end: date = row["close_date"]
            days = row["business_days"]
            unit = "dia útil" if days == 1 else "dias úteis"
            inside = [holiday.isoformat() for holiday in holidays if start < holiday <= end]
            findings.append(
                Finding(
                    rule=self.id,
                    rule_version=self.version,
                    record=row["control_number"],
                    severity=Severity.MEDIUM,
                    score=round(0.4 + 0.3 * (minimum - days) / minimum, 3),
                    message=(
                        f"Dispensa com prazo de propostas de {days} {unit} ({day(start)} a {day(end)}), "
                        f"abaixo do mínimo de {minimum} dias úteis ({LEGAL_BASIS})"
                    ),
                    evidence={
                        "proposal_open_at": row["proposal_open_at"].isoformat(),
                        "proposal_close_at": row["proposal_close_at"].isoformat(),
                        "business_days": days,
                        "calendar_days": (end - start).days,
                        "min_business_days": minimum,
                        "holidays_in_window": inside,
                        "counting": "exclui o dia da abertura, inclui o do encerramento (art. 183)",
                        "buyer_cnpj": row["buyer_cnpj"],
                        "link": link(RecordKind.CONTRATACAO, row["buyer_cnpj"], row["year"], row["sequence"]),
                    },
                    legal_basis=LEGAL_BASIS,
                )
            )
        return RuleResult(
            findings=findings,
            skipped=population.height - usable.height,
            meta={"population": population.height, "min_business_days": minimum, "flagged": short.height},
        )
