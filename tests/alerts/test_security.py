"""SSRF checks (IP literals and localhost only: no test touches DNS beyond the hosts file)."""

from __future__ import annotations

import pytest

from cidadao.alerts.security import UnsafeURLError, check_url, one_line, redact


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
    check_url("https://8.8.8.8/hook", [])
    check_url("http://localhost:8080/hook", ["LOCALHOST"])  # exempt from https and address checks


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
