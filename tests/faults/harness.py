"""Fault-test harness: own Redis and PostgreSQL servers on free ports in temp dirs, real worker and beat
subprocesses, a local PNCP replay. Nothing here touches the machine's shared services destructively."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cidadao.config import load_settings
from cidadao.monitor.ingest import PNCP_TZ
from cidadao.runtime.supervisor import beat_command, worker_command
from cidadao.sources.replay import ReplayServer
from cidadao.store.db import engine_for, upgrade
from cidadao.store.models import RecordRow

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # a service in the middle of (re)starting
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory)]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._pings, 10, "redis to start")

    def _pings(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class PostgresServer:
    """initdb refuses to run as root: then the cluster belongs to the `postgres` account, in its own dir."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="cidadao-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root without a postgres account for initdb")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.port = free_port()
        subprocess.run(
            [*self.prefix, "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self.prefix, "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
             *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Stack:
    """Worker/beat subprocesses sharing one environment; their output goes to files for post-mortems."""

    directory: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.processes[name] = process
        return process

    def worker(self, name: str = "worker", pool: str = "solo") -> subprocess.Popen[bytes]:
        return self.start(name, worker_command(concurrency=1, pool=pool, hostname=f"{name}@faults"))

    def beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        return self.start(name, beat_command())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):  # already dead
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)


def today_dispensas(count: int, buyers: int = 40, start: int = 1) -> list[dict[str, Any]]:
    """Dispensas published today (what the incremental monitor fetches), values around the legal limit."""
    now = datetime.now(PNCP_TZ).replace(tzinfo=None, microsecond=0) - timedelta(minutes=5)
    factors = (0.3, 0.55, 0.95, 1.3, 0.7)
    records = []
    for number in range(start, start + count):
        cnpj = f"{10_000_000 + number % buyers:08d}000199"
        stamp = (now - timedelta(seconds=number % 600)).isoformat()
        value = round(factors[number % len(factors)] * 62_725.59 + number % 97, 2)
        records.append(
            {
                "numeroControlePNCP": f"{cnpj}-1-{number:06d}/{now.year}",
                "anoCompra": now.year,
                "sequencialCompra": number,
                "modalidadeId": 8,
                "modalidadeNome": "Dispensa",
                "objetoCompra": ("Aquisição de medicamentos", "Serviço de limpeza", "Material de escritório")[
                    number % 3
                ],
                "valorTotalEstimado": value,
                "valorTotalHomologado": value,
                "dataPublicacaoPncp": stamp,
                "dataAtualizacao": stamp,
                "amparoLegal": {"codigo": 19, "nome": "Lei 14.133/2021, Art. 75, II"},
                "orgaoEntidade": {
                    "cnpj": cnpj,
                    "razaoSocial": f"MUNICIPIO {number % buyers}",
                    "esferaId": "M",
                },
                "unidadeOrgao": {"ufSigla": "MA", "codigoUnidade": "1", "municipioNome": "Fortuna"},
            }
        )
    return records


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


def stack_env(
    database_url: str, redis_url: str, replay: ReplayServer, tmp_path: Path, **extra: str
) -> dict[str, str]:
    upgrade(database_url)
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PNCP_BASE_URL": replay.url,
        "PNCP_REQUESTS_PER_SECOND": "200",
        "PNCP_MAX_RETRIES": "2",
        "ALERT_FILE": str(tmp_path / "alerts.jsonl"),
        "ALERT_MIN_SEVERITY": "low",
        "ALERT_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Stack]]:
    stacks: list[Stack] = []

    def make(env: dict[str, str]) -> Stack:
        created = Stack(tmp_path, env)
        stacks.append(created)
        return created

    yield make
    for created in stacks:
        created.stop_all()


def record_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(RecordRow)) or 0)


def settings_for(env: dict[str, str]) -> Any:
    return load_settings(
        database_url=env["DATABASE_URL"],
        alert_file=Path(env["ALERT_FILE"]),
        alert_min_severity=env["ALERT_MIN_SEVERITY"],
    )


def engine_of(env: dict[str, str]) -> Engine:
    return engine_for(env["DATABASE_URL"])
