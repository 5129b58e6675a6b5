"""Outbound safety: SSRF checks on webhook URLs, secret redaction, header-safe text."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from cidadao.config import mask_url

# Cloud metadata endpoints that are not covered by the private/link-local ranges.
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")}
)


class UnsafeURLError(ValueError):
    """A webhook URL we refuse to call; the message never contains the URL's secret parts."""


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in _METADATA_ADDRESSES
    )


def check_url(url: str, allowed_hosts: Iterable[str]) -> str | None:
    """Refuse non-https URLs and hosts resolving to internal addresses, unless the host is allow-listed.

    Every resolved address is checked, so a name with one public and one private address is refused.
    Returns the vetted address to connect to (None for an allow-listed host), so that a second DNS answer
    cannot swap in an internal address between the check and the connection.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeURLError(f"no host in {mask_url(url)}")
    if host in {h.lower() for h in allowed_hosts}:
        return None
    if parts.scheme != "https":
        raise UnsafeURLError(f"only https webhooks are allowed: {mask_url(url)}")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as error:
        raise UnsafeURLError(f"cannot resolve {host}: {error.strerror or error}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if _refused(address):
            raise UnsafeURLError(f"{host} resolves to a non-public address ({address})")
    if not addresses:
        raise UnsafeURLError(f"cannot resolve {host}")
    return str(addresses[0])


def pin(url: str, address: str) -> tuple[str, str]:
    """The URL aimed at a vetted address, and the Host header (host[:port] as written) it must carry."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{userinfo}{at}{literal}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), host


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Remove secrets (URL tokens, passwords) from an error message before it is stored or logged."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return mask_url(text)


_LINE_BREAKS = re.compile(r"[\r\n\u0085\u2028\u2029\v\f]+")


def one_line(text: str | None, limit: int | None = None) -> str:
    """Collapse line breaks: what goes in a header, subject or title can never start a new line."""
    flat = _LINE_BREAKS.sub(" ", text or "").strip()
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat
