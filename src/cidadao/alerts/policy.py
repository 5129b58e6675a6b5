"""Who gets what, when: severity threshold per channel, grouping per buyer, quiet hours."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from cidadao.alerts.payload import LOCAL_TZ, severity_rank, utc
from cidadao.config import Settings
from cidadao.domain.records import Severity


def plan(views: list[dict[str, Any]], threshold: int) -> list[list[dict[str, Any]]]:
    """Alerts for one call: one per finding, but more than `threshold` of one buyer -> one group."""
    by_buyer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    alerts: list[list[dict[str, Any]]] = []
    for view in sorted(views, key=lambda v: int(v["id"])):
        if view.get("buyer_cnpj"):
            by_buyer[str(view["buyer_cnpj"])].append(view)
        else:
            alerts.append([view])
    for group in by_buyer.values():
        if len(group) > threshold:
            alerts.append(group)
        else:
            alerts.extend([view] for view in group)
    return sorted(alerts, key=lambda group: int(group[0]["id"]))


def quiet_hours(settings: Settings) -> tuple[int, int] | None:
    if not settings.alert_quiet_hours:
        return None
    start, end = settings.alert_quiet_hours.split("-")
    return int(start), int(end)


def held_until(settings: Settings, now: datetime, severity: str) -> datetime | None:
    """End of the current quiet period (UTC) for a non-critical alert sent during it; None: send now."""
    window = quiet_hours(settings)
    if window is None or severity_rank(severity) >= Severity.CRITICAL.rank:
        return None
    start, end = window
    local = utc(now).astimezone(LOCAL_TZ)
    hour = local.hour
    inside = start <= hour < end if start < end else (hour >= start or hour < end)
    if not inside or start == end:
        return None
    release = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if release <= local:
        release += timedelta(days=1)
    return utc(release)
