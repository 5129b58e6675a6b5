from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis

from cidadao import cache as cache_module
from cidadao.cache import backend, cache, hit_ratio, reset_stats, shared_stats, stats


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    reset_stats()


def _workload(fetch: Any) -> list[Any]:
    """A monitor-like pattern: 20 distinct suppliers, each looked up 5 times."""
    return [fetch(f"{n % 20:014d}") for n in range(100)]


def test_repeated_workload_hits_80_percent_in_process() -> None:
    calls: list[str] = []

    @cache(ttl=60, name=f"sancoes-{uuid.uuid4().hex}")
    def sanctions(cnpj: str) -> dict[str, Any]:
        calls.append(cnpj)
        return {"cnpj": cnpj, "sancoes": [{"lista": "CEIS"}]}

    results = _workload(sanctions)
    assert len(calls) == 20
    assert results[20] == {"cnpj": f"{0:014d}", "sancoes": [{"lista": "CEIS"}]}
    assert hit_ratio() == pytest.approx(0.8)
    (figures,) = stats().values()
    assert figures == {"hit": 80, "miss": 20, "error": 0}


def test_redis_cache_is_shared_and_tallied(monkeypatch: pytest.MonkeyPatch) -> None:
    redis.Redis.from_url("redis://127.0.0.1:6379/12").flushdb()  # a database number of its own
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/12")
    cache_module.get_settings.cache_clear()
    name = f"contratos-{uuid.uuid4().hex}"
    calls: list[str] = []

    @cache(ttl=60, name=name)
    def first(cnpj: str) -> list[str]:
        calls.append(cnpj)
        return [cnpj]

    @cache(ttl=60, name=name)
    def second(cnpj: str) -> list[str]:  # another process's copy of the same function
        calls.append(cnpj)
        return [cnpj]

    _workload(first)
    assert [second(f"{n:014d}") for n in range(20)] == [[f"{n:014d}"] for n in range(20)]
    assert len(calls) == 20  # the second copy only hit
    tally = shared_stats("redis://127.0.0.1:6379/12")
    assert tally[(name, "hit")] == 100
    assert tally[(name, "miss")] == 20
    assert hit_ratio(name) == pytest.approx(100 / 120)


def test_failing_cache_never_fails_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    cache_module.get_settings.cache_clear()
    with pytest.raises(redis.ConnectionError):
        backend().get("probe")

    @cache(ttl=60, name="down")
    def lookup(cnpj: str) -> str:
        return cnpj.upper()

    assert [lookup("ab"), lookup("ab")] == ["AB", "AB"]
    assert stats()["down"]["error"] == 4  # a failed read and a failed write per call


def test_unserialisable_results_are_returned_uncached() -> None:
    @cache(ttl=60, name="objects")
    def make() -> object:
        return object()

    assert make() is not make()
    assert stats()["objects"] == {"hit": 0, "miss": 2, "error": 2}


def test_expiry_methods_and_async() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @cache(ttl=1, name=f"client-{uuid.uuid4().hex}")
        def get(self, path: str) -> str:
            self.calls += 1
            return path

    one, two = Client(), Client()
    assert one.get("/a") == two.get("/a") == "/a"
    assert (one.calls, two.calls) == (1, 0)  # `self` is not part of the key
    time.sleep(1.1)
    one.get("/a")
    assert one.calls == 2

    awaited: list[int] = []

    @cache(ttl=60, name=f"async-{uuid.uuid4().hex}")
    async def fetch(n: int) -> int:
        awaited.append(n)
        return n * 2

    async def run() -> list[int]:
        return [await fetch(n % 3) for n in range(9)]

    assert asyncio.run(run()) == [0, 2, 4] * 3
    assert awaited == [0, 1, 2]
