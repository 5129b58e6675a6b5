"""`@cache(ttl=...)` in front of source API calls: Redis when REDIS_URL is set, in-process otherwise.

Results must be JSON-serialisable (what source APIs return); they come back as JSON types (tuples as lists).
A failing cache never fails the call: errors are counted and the function runs. A first parameter named
`self` or `cls` is left out of the key, so methods of different client instances share entries.
Hits, misses and errors are counted for Prometheus (cidadao_cache_requests_total, and the API's hit ratio);
with Redis they are also tallied there, so the API's /metrics shows the ratio of the workers' source calls.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import threading
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import orjson
import redis
from prometheus_client import Counter

from cidadao.config import get_settings
from cidadao.logs import get_logger

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

SHARED_STATS_KEY = "cidadao:cache:stats"
REQUESTS = Counter("cidadao_cache_requests", "Source cache lookups", ["name", "result"])
_tally: Tally[tuple[str, str]] = Tally()  # same figures as REQUESTS, readable without parsing metrics
_tally_lock = threading.Lock()


def _count(name: str, result: str) -> None:
    REQUESTS.labels(name=name, result=result).inc()
    with _tally_lock:
        _tally[(name, result)] += 1


def hit_ratio(name: str | None = None) -> float:
    """Hits / (hits + misses) since start (or since `reset_stats`), for one function or all."""
    with _tally_lock:
        hits = sum(n for (fn, result), n in _tally.items() if result == "hit" and name in (None, fn))
        misses = sum(n for (fn, result), n in _tally.items() if result == "miss" and name in (None, fn))
    return hits / (hits + misses) if hits + misses else 0.0


def stats() -> dict[str, dict[str, int]]:
    with _tally_lock:
        out: dict[str, dict[str, int]] = {}
        for (name, result), n in _tally.items():
            out.setdefault(name, {"hit": 0, "miss": 0, "error": 0})[result] = n
        return out


def reset_stats() -> None:
    with _tally_lock:
        _tally.clear()


class Backend(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: int) -> None: ...
    def record(self, name: str, result: str) -> None: ...


class MemoryBackend:
    """A bounded LRU with expiry, per process."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return item[1]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def record(self, name: str, result: str) -> None:
        """Nothing to share: in-process figures are the Prometheus counters."""


class RedisBackend:
    def __init__(self, url: str) -> None:
        # Short timeouts: a slow cache must cost less than the call it saves.
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def get(self, key: str) -> bytes | None:
        value = self._redis.get(key)
        return cast(bytes | None, value)

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self._redis.set(key, value, ex=ttl)

    def record(self, name: str, result: str) -> None:
        self._redis.hincrby(SHARED_STATS_KEY, f"{name}|{result}", 1)


def shared_stats(url: str) -> dict[tuple[str, str], int]:
    """Lookups tallied in Redis by every process, as {(function, hit|miss|error): count}."""
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        raw = cast(dict[bytes, bytes], client.hgetall(SHARED_STATS_KEY))
    finally:
        client.close()
    out: dict[tuple[str, str], int] = {}
    for field, count in raw.items():
        name, _, result = field.decode().rpartition("|")
        out[(name, result)] = int(count)
    return out


_backends: dict[str | None, Backend] = {}


def backend() -> Backend:
    """The backend for the current settings (one per REDIS_URL per process)."""
    url = get_settings().redis_url
    found = _backends.get(url)
    if found is None:
        found = _backends[url] = RedisBackend(url) if url else MemoryBackend()
    return found


def _key_builder(func: Callable[..., Any], name: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    params = list(inspect.signature(func).parameters)
    skip_first = bool(params) and params[0] in ("self", "cls")

    def key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        payload = orjson.dumps(
            [args[1:] if skip_first else args, kwargs], default=repr, option=orjson.OPT_SORT_KEYS
        )
        return f"cidadao:cache:{name}:{hashlib.sha256(payload).hexdigest()}"

    return key


def _lookup(name: str, key: str) -> tuple[bool, Any]:
    store = backend()
    try:
        raw = store.get(key)
    except Exception as error:
        _count(name, "error")
        log.warning("cache_get_failed", cache=name, error=str(error))
        return False, None
    result = "miss" if raw is None else "hit"
    _count(name, result)
    try:
        store.record(name, result)
    except Exception as error:  # statistics are best effort
        log.debug("cache_record_failed", cache=name, error=str(error))
    return (False, None) if raw is None else (True, orjson.loads(raw))


def _store(name: str, key: str, value: Any, ttl: int) -> None:
    try:
        backend().set(key, orjson.dumps(value), ttl)
    except Exception as error:  # unserialisable values and backend failures alike: just not cached
        _count(name, "error")
        log.warning("cache_set_failed", cache=name, error=str(error))


def cache(ttl: int | None = None, *, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Cache a (sync or async) function's JSON result for `ttl` s (default CACHE_TTL_SECONDS; 0: off)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        label = name or f"{func.__module__}.{func.__qualname__}"
        make_key = _key_builder(func, label)

        def seconds() -> int:
            return get_settings().cache_ttl_seconds if ttl is None else ttl

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                life = seconds()
                if life <= 0:
                    return await func(*args, **kwargs)
                key = make_key(args, kwargs)
                found, value = await asyncio.to_thread(_lookup, label, key)
                if found:
                    return value
                value = await func(*args, **kwargs)
                await asyncio.to_thread(_store, label, key, value, life)
                return value

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            life = seconds()
            if life <= 0:
                return func(*args, **kwargs)
            key = make_key(args, kwargs)
            found, value = _lookup(label, key)
            if found:
                return cast(R, value)
            result = func(*args, **kwargs)
            _store(label, key, result, life)
            return result

        return wrapper

    return decorate
