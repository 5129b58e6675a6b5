"""Discord webhooks: embeds in Portuguese, colour by severity, within Discord's documented limits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from cidadao.alerts.channels.base import Channel, Delivery, HttpChannel, min_rank_for, register, short_hash
from cidadao.alerts.payload import SEVERITY_COLOURS, SEVERITY_LABELS, brl, local_time, score_text
from cidadao.alerts.render import buyer_label, subject
from cidadao.alerts.security import one_line
from cidadao.config import Settings

# https://discord.com/developers/docs/resources/message#embed-object-embed-limits
LIMITS = {
    "content": 2000,
    "embeds": 10,
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
    "total": 6000,
}
DISCORD_HOSTS = frozenset({"discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com"})
_WEBHOOK_PATH = re.compile(r"/api/webhooks/\d+/[\w-]+/?")
_MARKDOWN = re.compile(r"([\\*_~`|>#\[\]()<])")
_FOOTER = "Cidadão.AI Sentinel · indício automático de risco, verifique a fonte"


def is_discord_url(url: str, allowed_hosts: Sequence[str] = ()) -> bool:
    """Discord's hosts, or an allow-listed host (a local stand-in) with Discord's webhook path."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    known = host in DISCORD_HOSTS or host in {h.lower() for h in allowed_hosts}
    return known and _WEBHOOK_PATH.fullmatch(parts.path) is not None


def safe(text: Any, limit: int) -> str:
    """One line, Markdown escaped, mentions defused, cut to Discord's limit; never empty."""
    flat = _MARKDOWN.sub(r"\\\1", one_line(str(text) if text is not None else "")).replace("@", "@\u200b")
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip("\\") + "…"
    return flat or "—"


def _field(name: str, value: Any, inline: bool = True) -> dict[str, Any]:
    return {
        "name": safe(name, LIMITS["field_name"]),
        "value": safe(value, LIMITS["field_value"]),
        "inline": inline,
    }


def _link(url: str | None, label: str = "Ver no PNCP") -> str:
    return f"[{label}]({url})" if url else "—"


def _line(finding: dict[str, Any], limit: int = 300) -> str:
    label = SEVERITY_LABELS.get(finding["severity"], finding["severity"]).upper()
    text = safe(f"{finding['message']} — {brl(finding['value'])}", limit)
    return f"• **{label}** {text} {_link(finding.get('link'), 'PNCP')}"


def _lines(findings: list[dict[str, Any]], room: int) -> str:
    lines: list[str] = []
    used = 0
    for index, finding in enumerate(findings):
        line = _line(finding)
        more = f"… e mais {len(findings) - index}"
        if used + len(line) + 1 + len(more) > room:
            lines.append(more)
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


def _finding_embed(finding: dict[str, Any]) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": safe(
            subject({"type": "finding.created", "data": {"finding": finding}}, prefix=False), LIMITS["title"]
        ),
        "description": safe(finding["message"], LIMITS["description"]),
        "color": SEVERITY_COLOURS.get(finding["severity"], SEVERITY_COLOURS["low"]),
        "fields": [
            _field("Órgão", buyer_label(finding), inline=False),
            _field("UF", finding.get("uf")),
            _field("Valor", brl(finding.get("value"))),
            _field("Fornecedor", finding.get("supplier_name") or finding.get("supplier_id")),
            _field("Regra", f"{finding['rule']} (pontuação {score_text(finding['score'])})"),
        ],
        "footer": {"text": _FOOTER},
    }
    if finding.get("legal_basis"):
        embed["fields"].append(_field("Base legal", finding["legal_basis"], inline=False))
    if finding.get("link"):
        embed["url"] = finding["link"]
        embed["fields"].append({"name": "PNCP", "value": finding["link"], "inline": False})
    if finding.get("created_at"):
        embed["timestamp"] = finding["created_at"]
    return embed


def _counts(counts: dict[str, int], labels: dict[str, str] | None = None) -> str:
    lines = [f"{safe((labels or {}).get(k, k), 100)}: {v}" for k, v in counts.items()]
    text = ""
    for line in lines:
        if len(text) + len(line) + 1 > LIMITS["field_value"]:
            break
        text += line + "\n"
    return text.strip() or "—"


def embed_length(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards the 6000 total."""
    fields = embed.get("fields", [])
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + sum(len(f["name"]) + len(f["value"]) for f in fields)
        + len(embed.get("footer", {}).get("text", ""))
        + len(embed.get("author", {}).get("name", ""))
    )


def _fit(embed: dict[str, Any]) -> dict[str, Any]:
    excess = embed_length(embed) - LIMITS["total"]
    if excess > 0:
        description = embed["description"]
        embed["description"] = description[: max(1, len(description) - excess - 1)].rstrip("\\") + "…"
    return embed


def embeds_for(payload: dict[str, Any]) -> list[dict[str, Any]]:
    data = payload["data"]
    kind = payload["type"]
    if kind == "finding.created":
        return [_finding_embed(data["finding"])]
    title = safe(subject(payload, prefix=False), LIMITS["title"])
    if kind == "findings.grouped":
        return [
            {
                "title": title,
                "description": _lines(data["findings"], 3500),
                "color": SEVERITY_COLOURS.get(data["max_severity"], SEVERITY_COLOURS["low"]),
                "fields": [
                    _field("Órgão", buyer_label(data["buyer"]), inline=False),
                    _field("UF", data["buyer"].get("uf")),
                    _field("Indícios", data["count"]),
                ],
                "footer": {"text": _FOOTER},
            }
        ]
    if kind == "digest.daily":
        period = f"{local_time(data['period']['start'])} a {local_time(data['period']['end'])}"
        if not data["total"]:
            empty = f"Nenhuma anomalia crítica no período ({period})."
            return [{"title": title, "description": empty, "color": SEVERITY_COLOURS["low"]}]
        return [
            {
                "title": title,
                "description": f"Período: {period} (horário de Brasília)\n" + _lines(data["top"], 3000),
                "color": SEVERITY_COLOURS.get(data["max_severity"], SEVERITY_COLOURS["low"]),
                "fields": [
                    {"name": "Por severidade", "value": _counts(data["by_severity"], SEVERITY_LABELS)},
                    {"name": "Por regra", "value": _counts(data["by_rule"])},
                    {"name": "Por UF", "value": _counts(data["by_uf"])},
                ],
                "footer": {"text": _FOOTER},
            }
        ]
    colour = SEVERITY_COLOURS.get(str(data.get("max_severity")), SEVERITY_COLOURS["low"])
    return [{"title": title, "description": safe(data.get("message"), 3500), "color": colour}]


def discord_body(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": "Cidadão.AI Sentinel",
        "embeds": [_fit(embed) for embed in embeds_for(payload)[: LIMITS["embeds"]]],
        # Finding text is untrusted: never let it ping @everyone or a role.
        "allowed_mentions": {"parse": []},
    }


class DiscordChannel(HttpChannel):
    kind = "discord"

    def body(self, delivery: Delivery) -> bytes:
        return orjson.dumps(discord_body(delivery.payload))


@register("discord")
def _discord_channels(settings: Settings) -> Sequence[Channel]:
    rank = min_rank_for(settings, "discord")
    return [
        DiscordChannel(f"discord:{short_hash(url)}", rank, url, settings)
        for url in settings.alert_webhooks
        if is_discord_url(url, settings.alert_allowed_hosts)
    ]
