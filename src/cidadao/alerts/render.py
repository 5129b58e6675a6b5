"""Portuguese text of alerts: Jinja2 templates for e-mail and console, one subject line per payload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from cidadao.alerts.payload import RISK_LABELS, SEVERITY_LABELS, brl, local_time, score_text
from cidadao.alerts.security import one_line

_TEMPLATES = {
    "finding.created": "finding",
    "findings.grouped": "group",
    "digest.daily": "digest",
}  # anything else (system.*) carries a ready Portuguese `message`

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    # HTML templates escape every value; text templates are plain text and never reach a header.
    autoescape=lambda name: (name or "").endswith(".html.j2"),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_env.filters["brl"] = brl
_env.filters["local_time"] = local_time
_env.filters["score"] = score_text
_env.filters["one_line"] = one_line
_env.filters["severity"] = lambda value: SEVERITY_LABELS.get(str(value), str(value))


def buyer_label(item: dict[str, Any]) -> str:
    return str(
        item.get("buyer_name") or item.get("name") or item.get("buyer_cnpj") or item.get("cnpj") or "—"
    )


_env.filters["buyer"] = buyer_label


def subject(payload: dict[str, Any], prefix: bool = True) -> str:
    data = payload["data"]
    kind = payload["type"]
    if kind == "finding.created":
        finding = data["finding"]
        label = RISK_LABELS.get(finding["severity"], finding["severity"])
        text = f"Risco {label}: {finding['rule']} — {buyer_label(finding)}"
    elif kind == "findings.grouped":
        text = f"{data['count']} alertas para {buyer_label(data['buyer'])}"
    elif kind == "digest.daily":
        period = data["period"]
        if data["total"]:
            span = f"{local_time(period['start'])} a {local_time(period['end'])}"
            count = "1 anomalia" if data["total"] == 1 else f"{data['total']} anomalias"
            text = f"Resumo: {count} de {span}"
        else:
            text = "Resumo: nenhuma anomalia crítica no período"
    elif kind == "system.test":
        text = "Alerta de teste"
    else:
        text = "Aviso do sistema"
    return one_line(f"[Cidadão.AI] {text}" if prefix else text, 200)


def render(payload: dict[str, Any], fmt: str) -> str:
    """fmt: txt or html."""
    template = _env.get_template(f"{_TEMPLATES.get(payload['type'], 'system')}.{fmt}.j2")
    return template.render(data=payload["data"], subject=subject(payload))
