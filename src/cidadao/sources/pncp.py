"""Client of the PNCP consulta API: contratações by publication date and modalidade, contratos by date.

Pages come out one at a time with their position (endpoint, modalidade, window, page number) so the caller
can checkpoint after storing each one and resume at the next page after a crash. Transient failures
(timeouts, connection errors, 5xx, 429) are retried with exponential backoff and jitter, honouring
Retry-After; a token bucket keeps the request rate polite across threads.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from cidadao.config import Settings, get_settings
from cidadao.logs import get_logger

log = get_logger(__name__)

ENDPOINT_PATHS = {
    "contratacoes": "/v1/contratacoes/publicacao",
    "contratos": "/v1/contratos",
}
# The contratações endpoint refuses pages larger than 50 records.
MAX_PAGE_SIZE = {"contratacoes": 50, "contratos": 500}
MAX_RETRY_AFTER_SECONDS = 600.0
USER_AGENT = "cidadao-sentinel/0.1"


class PncpError(RuntimeError):
    """PNCP refused a request (4xx) or kept failing after every retry."""


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's own advice, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Window:
    """Publication dates [start, end], both inclusive, as PNCP's dataInicial/dataFinal."""

    start: date
    end: date


def split_window(start: date, end: date, days: int) -> list[Window]:
    """Consecutive windows of at most `days` days covering [start, end]."""
    if days < 1:
        raise ValueError("days must be at least 1")
    windows = []
    while start <= end:
        last = min(start + timedelta(days=days - 1), end)
        windows.append(Window(start, last))
        start = last + timedelta(days=1)
    return windows


class Page(tuple[int, list[dict[str, Any]]]):
    """One response page. Unpacks as (number, records); the rest says where it sits, for checkpoints."""

    endpoint: str
    modalidade: int | None
    window: Window
    total_pages: int
    total_records: int

    def __new__(
        cls,
        number: int,
        records: list[dict[str, Any]],
        *,
        endpoint: str,
        modalidade: int | None,
        window: Window,
        total_pages: int,
        total_records: int,
    ) -> Page:
        page = super().__new__(cls, (number, records))
        page.endpoint = endpoint
        page.modalidade = modalidade
        page.window = window
        page.total_pages = total_pages
        page.total_records = total_records
        return page

    @property
    def number(self) -> int:
        return self[0]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self[1]

    def __repr__(self) -> str:
        return (
            f"Page({self.endpoint}, modalidade={self.modalidade}, {self.window.start}..{self.window.end}, "
            f"{self.number}/{self.total_pages}, {len(self.records)} records)"
        )


class RateLimiter:
    """Token bucket: `rate` requests per second on average, bursts of at most `burst`. Thread-safe.

    A caller that finds the bucket empty reserves its token (the balance goes negative) and sleeps outside
    the lock, so concurrent callers queue up fairly instead of waking together.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class PncpClient:
    """Synchronous PNCP consulta client. `transport`, `sleep`, `clock` and `now` are injectable for tests."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        self.settings = settings or get_settings()
        self.base_url = (base_url or self.settings.pncp_base_url).rstrip("/")
        self.limiter = RateLimiter(self.settings.pncp_requests_per_second, clock=clock, sleep=sleep)
        self._sleep = sleep
        self._now = now
        self._rng = rng or random.Random()
        self._backoff = wait_exponential_jitter(initial=backoff_initial, max=backoff_max, jitter=0)
        self._backoff_initial = backoff_initial
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=self.settings.pncp_timeout_seconds,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PncpClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def iter_pages(
        self,
        endpoint: str,
        start: date,
        end: date,
        modalidade: int | None = None,
        first_page: int = 1,
    ) -> Iterator[Page]:
        """Every page of [start, end], split into windows of at most `pncp_window_days` days.

        `first_page` applies to the first window: resuming at page N of an interrupted window skips the
        pages already stored. `endpoint` is "contratacoes" (needs a modalidade) or "contratos".
        """
        if endpoint not in ENDPOINT_PATHS:
            raise ValueError(f"unknown PNCP endpoint {endpoint!r}; expected one of {sorted(ENDPOINT_PATHS)}")
        if endpoint == "contratacoes" and modalidade is None:
            raise ValueError("the contratacoes endpoint needs a modalidade")
        for index, window in enumerate(split_window(start, end, self.settings.pncp_window_days)):
            number = first_page if index == 0 else 1
            while True:
                page = self.fetch_page(endpoint, window, number, modalidade)
                if page.records or number <= page.total_pages:
                    yield page
                if number >= page.total_pages or not page.records:
                    break
                number += 1

    def fetch_page(self, endpoint: str, window: Window, number: int, modalidade: int | None = None) -> Page:
        """One page; HTTP 204 (nothing published in the window) is an empty page."""
        page_size = min(self.settings.pncp_page_size, MAX_PAGE_SIZE[endpoint])
        params: dict[str, str | int] = {
            "dataInicial": f"{window.start:%Y%m%d}",
            "dataFinal": f"{window.end:%Y%m%d}",
            "pagina": number,
            "tamanhoPagina": page_size,
        }
        if modalidade is not None:
            params["codigoModalidadeContratacao"] = modalidade
        body = self._get(ENDPOINT_PATHS[endpoint], params)
        if body is None:
            return Page(
                number,
                [],
                endpoint=endpoint,
                modalidade=modalidade,
                window=window,
                total_pages=0,
                total_records=0,
            )
        records = body.get("data") or []
        if not isinstance(records, list):
            raise PncpError(f"{endpoint} page {number}: 'data' is {type(records).__name__}, not a list")
        total_pages = int(body.get("totalPaginas") or 0)
        if "paginasRestantes" in body and body["paginasRestantes"] is not None:
            # paginasRestantes is authoritative when present (totalPaginas may be missing on the last page).
            total_pages = max(total_pages, number + int(body["paginasRestantes"]))
        return Page(
            number,
            records,
            endpoint=endpoint,
            modalidade=modalidade,
            window=window,
            total_pages=total_pages,
            total_records=int(body.get("totalRegistros") or len(records)),
        )

    def _get(self, path: str, params: dict[str, str | int]) -> dict[str, Any] | None:
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.pncp_max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda error: isinstance(error, _Transient)),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, params)
        except _Transient as error:
            attempts = self.settings.pncp_max_retries + 1
            raise PncpError(f"GET {path} {params} failed after {attempts} attempts: {error}") from error

    def _attempt(self, path: str, params: dict[str, str | int]) -> dict[str, Any] | None:
        self.limiter.acquire()
        try:
            response = self._http.get(path, params=params)
        except httpx.TimeoutException as error:
            raise _Transient(f"timeout ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise _Transient(f"connection error ({type(error).__name__}: {error})") from error
        status = response.status_code
        if status == 204:
            return None
        if status == 429 or status >= 500:
            advice = retry_after_seconds(response.headers.get("Retry-After"), self._now())
            raise _Transient(f"HTTP {status}", advice)
        if status != 200:
            raise PncpError(f"GET {path} {params}: HTTP {status}: {response.text[:300]}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as error:
            raise _Transient(f"unreadable JSON body ({error})") from error  # a truncated response
        if not isinstance(body, dict):
            raise PncpError(f"GET {path}: expected a JSON object, got {type(body).__name__}")
        return body

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
        # Exponential backoff with full jitter on top, so retrying clients do not synchronise.
        base = float(self._backoff(state))
        return base + self._rng.uniform(0, self._backoff_initial)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "pncp request failed, retrying", error=str(error), attempt=state.attempt_number, wait=wait
        )
