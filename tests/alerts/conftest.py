"""Real local receivers: an HTTP server playing Discord and generic webhooks, and aiosmtpd SMTP servers."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from cidadao.domain.records import Finding, Severity
from cidadao.store.db import engine_for, transaction, upgrade
from cidadao.store.models import RecordRow
from cidadao.store.repositories import save_findings

DISCORD_PATH = "/api/webhooks/123456/tok-en_SECRET"
HOOK_PATH = "/hooks/generic"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before answering: longer than the client timeout plays a hung receiver


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """Records every raw request on arrival, then answers the next scripted reply for its path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, deque[Reply]] = {}
        self.defaults: dict[str, Reply] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    receiver.requests.append(received)
                    queue = receiver.scripts.get(self.path)
                    reply = queue.popleft() if queue else receiver.defaults.get(self.path, Reply())
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self.lock:
            self.scripts.setdefault(path, deque()).extend(replies)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@contextmanager
def running(server: Receiver) -> Iterator[Receiver]:
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(Receiver()) as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@dataclass
class Smtp:
    port: int
    mailbox: Mailbox


def make_certificate(directory: Path, monkeypatch: pytest.MonkeyPatch, san: str) -> tuple[Path, Path]:
    """Self-signed certificate, trusted by the client through SSL_CERT_FILE."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    return make_certificate(tmp_path, monkeypatch, "DNS:localhost,IP:127.0.0.1")


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[Smtp]:
    """STARTTLS required, as on a real submission port."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_context(certificate),
        require_starttls=True,
    )
    controller.start()
    yield Smtp(controller.port, mailbox)
    controller.stop()


@pytest.fixture
def smtps_server(certificate: tuple[Path, Path]) -> Iterator[Smtp]:
    """Implicit TLS (port 465 style)."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=server_context(certificate)
    )
    controller.start()
    yield Smtp(controller.port, mailbox)
    controller.stop()


def add_record(engine: Engine, control_number: str, **columns: Any) -> None:
    cnpj, _, rest = control_number.partition("-")
    sequence, _, year = rest.partition("-")[2].partition("/")
    values: dict[str, Any] = {
        "kind": "contratacao",
        "control_number": control_number,
        "buyer_cnpj": cnpj,
        "buyer_name": "Prefeitura Municipal de Exemplo",
        "uf": "MG",
        "municipality": "Exemplo",
        "year": int(year),
        "sequence": int(sequence),
        "modalidade_id": 8,
        "object": "Aquisição de material de limpeza",
        "value_estimated": Decimal("123456.78"),
        "supplier_id": "11222333000181",
        "supplier_name": "Fornecedora Exemplo Ltda",
        "content_hash": "0" * 64,
        "raw": {},
        "source": "test",
        **columns,
    }
    with transaction(engine) as session:
        session.add(RecordRow(**values))


def make_finding(
    record: str, rule: str = "split_purchase", severity: Severity = Severity.HIGH, score: float = 0.8,
    message: str = "Compra fracionada: 3 dispensas somam R$ 150.000,00.",
) -> Finding:  # fmt: skip
    return Finding(rule, "1", record, severity, score, message, {"count": 3}, "Lei 14.133/2021, Art. 75, §1º")


AddFindings = Callable[..., list[int]]


def findings_adder(engine: Engine) -> AddFindings:
    """Store findings through the store's save_findings; returns the newly inserted ids."""

    def add(*findings: Finding) -> list[int]:
        with transaction(engine) as session:
            return save_findings(session, findings, None)

    return add


@pytest.fixture
def add_findings(engine: Engine) -> AddFindings:
    return findings_adder(engine)


@pytest.fixture
def add_findings_pg(pg_url: str) -> AddFindings:
    """For PostgreSQL-only tests: migrates the fresh schema first."""
    upgrade(pg_url)
    return findings_adder(engine_for(pg_url))
