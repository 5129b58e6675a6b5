"""Channel plugins: each kind registers a factory; rows name their channel by slug, never by URL."""

from __future__ import annotations

import hashlib
import os
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import certifi
import httpx
import orjson

from cidadao.alerts.payload import severity_rank
from cidadao.alerts.security import UnsafeURLError, check_url, pin, redact
from cidadao.config import Settings


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as a channel sees it."""

    key: str  # idempotency key, sent as webhook-id
    payload: dict[str, Any]


class DeliveryError(Exception):
    """A failed attempt. `retry_after` (seconds) comes from the receiver; permanent ones are not retried."""

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class Channel(ABC):
    kind: ClassVar[str]

    def __init__(self, slug: str, min_rank: int) -> None:
        self.slug = slug
        self.min_rank = min_rank  # lowest severity rank delivered at once (others only in the digest)

    @abstractmethod
    def send(self, delivery: Delivery) -> None:
        """Deliver or raise DeliveryError."""

    def close(self) -> None:  # noqa: B027  (optional hook: most channels hold no connection)
        """Release connections; called once after a dispatch batch."""


ChannelFactory = Callable[[Settings], Sequence[Channel]]
_REGISTRY: dict[str, ChannelFactory] = {}


def register(kind: str) -> Callable[[ChannelFactory], ChannelFactory]:
    def decorate(factory: ChannelFactory) -> ChannelFactory:
        _REGISTRY[kind] = factory
        return factory

    return decorate


def registered_kinds() -> list[str]:
    return sorted(_REGISTRY)


def build_channels(settings: Settings) -> list[Channel]:
    """Every configured channel; building one does no I/O."""
    return [channel for kind in sorted(_REGISTRY) for channel in _REGISTRY[kind](settings)]


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def min_rank_for(settings: Settings, kind: str) -> int:
    """ALERT_CHANNEL_MIN_SEVERITY (e.g. email=critical) overrides ALERT_MIN_SEVERITY per kind."""
    for item in settings.alert_channel_min_severity:
        name, _, severity = item.partition("=")
        if name.strip() == kind:
            return severity_rank(severity.strip())
    return settings.min_severity_rank


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: the Retry-After header (seconds or HTTP date) or Discord's JSON `retry_after`."""
    header = response.headers.get("retry-after")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                moment = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                moment = None
            if moment is not None:
                date = response.headers.get("date")
                now = parsedate_to_datetime(date) if date else None
                if now is not None:
                    return max(0.0, (moment - now).total_seconds())
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        return max(0.0, float(body["retry_after"]))
    return None


class HttpChannel(Channel):
    """POSTs JSON to a URL: SSRF-checked on every attempt (DNS may change), redirects never followed."""

    def __init__(self, slug: str, min_rank: int, url: str, settings: Settings) -> None:
        super().__init__(slug, min_rank)
        self._url = url
        self._allowed_hosts = tuple(settings.alert_allowed_hosts)
        self._timeout = settings.alert_timeout_seconds
        self._client: httpx.Client | None = None

    def body(self, delivery: Delivery) -> bytes:
        return orjson.dumps(delivery.payload)

    def headers(self, delivery: Delivery, body: bytes) -> dict[str, str]:
        return {"webhook-id": delivery.key}

    def send(self, delivery: Delivery) -> None:
        try:
            address = check_url(self._url, self._allowed_hosts)
        except UnsafeURLError as error:
            raise DeliveryError(str(error), permanent=True) from None
        if self._client is None:
            # trust_env=False: proxy variables must not reroute alerts around the SSRF checks; the CA
            # bundle still honours SSL_CERT_FILE (private CAs), else certifi's.
            tls = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())
            self._client = httpx.Client(
                timeout=self._timeout, follow_redirects=False, trust_env=False, verify=tls
            )
        body = self.body(delivery)
        headers = {"content-type": "application/json", "user-agent": "cidadao-sentinel"}
        headers.update(self.headers(delivery, body))
        target, extensions = self._url, {}
        if address is not None:
            # Connect to the address we vetted; TLS still verifies the certificate against the real host.
            target, headers["host"] = pin(self._url, address)
            extensions = {"sni_hostname": urlsplit(self._url).hostname or ""}
        try:
            response = self._client.post(target, content=body, headers=headers, extensions=extensions)
        except httpx.TimeoutException:
            raise DeliveryError(f"timeout after {self._timeout:g}s") from None
        except httpx.HTTPError as error:
            raise DeliveryError(redact(f"{type(error).__name__}: {error}", [self._url])) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = redact(response.text[:200], [self._url])
        if status == 429:
            raise DeliveryError(f"HTTP 429: {detail}", retry_after=_retry_after(response))
        if 300 <= status < 400:
            raise DeliveryError(f"HTTP {status}: redirects are not followed", permanent=True)
        if status in (408, 425) or status >= 500:
            raise DeliveryError(f"HTTP {status}: {detail}", retry_after=_retry_after(response))
        raise DeliveryError(f"HTTP {status}: {detail}", permanent=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
