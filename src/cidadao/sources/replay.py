"""A local PNCP-compatible server: the consulta endpoints over records held in memory.

Serves `GET /v1/contratacoes/publicacao` and `GET /v1/contratos` with the real pagination envelope
(data, totalRegistros, totalPaginas, numeroPagina, paginasRestantes, empty), HTTP 204 for nothing, the date
window on dataPublicacaoPncp and the modalidade filter. Faults can be injected (N x 5xx, 429 with
Retry-After, slow responses) and records published while it runs, so the client, the demo (`cidadao up
--demo`) and the time-to-alert benchmark run against something that behaves like PNCP, offline.
"""

from __future__ import annotations

import asyncio
import bisect
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cidadao.domain.records import RecordKind
from cidadao.sources.pncp import ENDPOINT_PATHS, MAX_PAGE_SIZE
from cidadao.sources.pncp_schema import detect_kind

MIN_PAGE_SIZE = 10


@dataclass(frozen=True, slots=True)
class Fault:
    """What the next matching request gets instead of its page."""

    status: int = 500
    retry_after: str | None = None  # Retry-After header value: seconds or an HTTP date
    delay: float = 0.0  # seconds before answering (a delay alone still serves the page)
    endpoint: str | None = None  # only requests to this endpoint ("contratacoes"/"contratos"); None: any


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(message: str, status: int = 400) -> Response:
    return _json({"message": message, "status": status}, status)


def _param_date(value: str | None, name: str) -> date:
    if value is None:
        raise ValueError(f"Parâmetro {name} é obrigatório")
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"Parâmetro {name} inválido: use o formato AAAAMMDD") from None


def _published(record: dict[str, Any]) -> str:
    # ISO timestamps sort as text; PNCP lists by publication time.
    return str(record.get("dataPublicacaoPncp") or "")


class ReplayServer:
    """PNCP on a free loopback port, in a background thread. Use as a context manager or start()/stop()."""

    def __init__(self, records: Iterable[dict[str, Any]] = (), *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._records: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINT_PATHS}
        self._faults: deque[Fault] = deque()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (endpoint, query), in arrival order
        self.publish(records)
        self.app = Starlette(
            routes=[
                Route(ENDPOINT_PATHS["contratacoes"], self._contratacoes),
                Route(ENDPOINT_PATHS["contratos"], self._contratos),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL to use as PNCP_BASE_URL."""
        return f"http://{self.host}:{self.port}"

    def publish(self, records: Iterable[dict[str, Any]]) -> int:
        """Add records (contratações and contratos, told apart by their fields); returns how many."""
        added = 0
        with self._lock:
            for record in records:
                endpoint = "contratos" if detect_kind(record) is RecordKind.CONTRATO else "contratacoes"
                # Kept sorted by publication time (ties in publication order), so a window is a bisect away.
                bisect.insort_right(self._records[endpoint], record, key=_published)
                added += 1
        return added

    def inject(self, fault: Fault, times: int = 1) -> None:
        """The next `times` requests (to `fault.endpoint`, or any) get this fault."""
        with self._lock:
            self._faults.extend([fault] * times)

    def fail_next(self, times: int = 1, status: int = 500, endpoint: str | None = None) -> None:
        self.inject(Fault(status=status, endpoint=endpoint), times)

    def throttle_next(
        self, times: int = 1, retry_after: str | None = "1", endpoint: str | None = None
    ) -> None:
        self.inject(Fault(status=429, retry_after=retry_after, endpoint=endpoint), times)

    def slow_next(self, seconds: float, times: int = 1, endpoint: str | None = None) -> None:
        self.inject(Fault(status=200, delay=seconds, endpoint=endpoint), times)

    def clear_faults(self) -> int:
        """Drop faults not yet served; returns how many."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
        return count

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.endpoint in (None, endpoint):
                    del self._faults[index]
                    return fault
        return None

    async def _contratacoes(self, request: Request) -> Response:
        return await self._serve("contratacoes", request)

    async def _contratos(self, request: Request) -> Response:
        return await self._serve("contratos", request)

    async def _serve(self, endpoint: str, request: Request) -> Response:
        query = dict(request.query_params)
        with self._lock:
            self.requests.append((endpoint, query))
        fault = self._take_fault(endpoint)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status != 200:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return Response(b"", status_code=fault.status, headers=headers)
        try:
            body = self.page(endpoint, query)
        except ValueError as error:
            return _error(str(error))
        return Response(status_code=204) if body is None else _json(body)

    def page(self, endpoint: str, query: dict[str, str]) -> dict[str, Any] | None:
        """The response body PNCP would give for this query; None for HTTP 204. ValueError: HTTP 400."""
        start = _param_date(query.get("dataInicial"), "dataInicial")
        end = _param_date(query.get("dataFinal"), "dataFinal")
        try:
            number = int(query.get("pagina", ""))
            size = int(query.get("tamanhoPagina", str(MAX_PAGE_SIZE[endpoint])))
        except ValueError:
            raise ValueError("Parâmetros pagina e tamanhoPagina devem ser números") from None
        if number < 1 or not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE[endpoint]:
            raise ValueError(f"pagina >= 1 e tamanhoPagina entre {MIN_PAGE_SIZE} e {MAX_PAGE_SIZE[endpoint]}")
        modalidade: int | None = None
        if endpoint == "contratacoes":
            try:
                modalidade = int(query["codigoModalidadeContratacao"])
            except (KeyError, ValueError):
                raise ValueError("Parâmetro codigoModalidadeContratacao é obrigatório") from None
        with self._lock:
            items = self._records[endpoint]
            first = bisect.bisect_left(items, start.isoformat(), key=_published)
            last = bisect.bisect_right(items, end.isoformat() + "\uffff", key=_published)
            matching = [
                record
                for record in items[first:last]
                if modalidade is None or record.get("modalidadeId") == modalidade
            ]
        total_pages = -(-len(matching) // size)
        if number > total_pages:
            return None
        return {
            "data": matching[(number - 1) * size : number * size],
            "totalRegistros": len(matching),
            "totalPaginas": total_pages,
            "numeroPagina": number,
            "paginasRestantes": total_pages - number,
            "empty": False,
        }

    def start(self) -> ReplayServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="pncp-replay", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the PNCP replay server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
