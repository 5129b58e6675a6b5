"""SSRF checks (IP literals and localhost only: no test touches DNS beyond the hosts file)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from tests.alerts.conftest import HOOK_PATH, Receiver, make_certificate, running, server_context
from tests.alerts.helpers import SECRET, alert_settings, verify_signature

from cidadao.alerts import security
from cidadao.alerts.channels.base import Delivery
from cidadao.alerts.channels.webhook import WebhookChannel
from cidadao.alerts.security import UnsafeURLError, check_url, one_line, pin, redact


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/hook",  # a name resolving to loopback
        "https://127.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "https://[::1]/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.100.100.200/latest/meta-data/",
        "https://[fe80::1]/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "http://8.8.8.8/hook",  # public but not https
        "ftp://8.8.8.8/hook",
        "https:///no-host",
    ],
)
def test_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, [])


def test_public_address_and_allow_listed_hosts_pass() -> None:
    assert check_url("https://8.8.8.8/hook", []) == "8.8.8.8"
    assert check_url("http://localhost:8080/hook", ["LOCALHOST"]) is None  # exempt: no pinning either


def test_pin_aims_at_the_vetted_address_and_keeps_the_host() -> None:
    assert pin("https://hooks.example.org/a/b?x=1", "203.0.113.7") == (
        "https://203.0.113.7/a/b?x=1",
        "hooks.example.org",
    )
    assert pin("https://user:pw@hooks.example.org:8443/a", "2001:db8::1") == (
        "https://user:pw@[2001:db8::1]:8443/a",
        "hooks.example.org:8443",
    )


def test_error_messages_hide_webhook_tokens() -> None:
    with pytest.raises(UnsafeURLError) as caught:
        check_url("http://discord.com/api/webhooks/1/s3cr3t-token", [])
    assert "s3cr3t-token" not in str(caught.value)
    assert redact("failed: https://h.example/p?k=abc password=hunter2", ["hunter2"]) == (
        "failed: https://h.example/p?k=abc password=***"
    )


def test_one_line_removes_every_line_break() -> None:
    assert one_line("a\r\nb\nc\u2028d\x0be", None) == "a b c d e"
    assert one_line("x" * 10, 5) == "xxxx…"


def test_pinned_https_delivery_keeps_host_and_verifies_the_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hooks.test resolves (hosts-file style) to a local TLS receiver whose certificate names hooks.test;
    loopback counts as public here only, so the request goes through the pinned, non-allow-listed path."""
    certificate = make_certificate(tmp_path, monkeypatch, "DNS:hooks.test")
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo("127.0.0.1" if host == "hooks.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(security, "_refused", lambda address: False)
    with running(Receiver(tls=server_context(certificate))) as receiver:
        url = f"https://hooks.test:{receiver.port}{HOOK_PATH}"
        channel = WebhookChannel("webhook:test", 1, url, alert_settings(alert_allowed_hosts=[]))
        payload = {"version": "1", "type": "system.test", "data": {"message": "teste"}}
        channel.send(Delivery(key="test-1", payload=payload))
        channel.close()
        [request] = receiver.at(HOOK_PATH)
    assert request.headers["host"] == f"hooks.test:{receiver.port}"
    assert verify_signature(SECRET, request.headers, request.body)
