"""Fixed-window rate limits per API credential and per client IP: 429 with Retry-After.

In-process counters by default; shared through Redis when REDIS_URL is set, so every worker sees one budget.
A Redis failure lets requests through (limits are protection, not a reason to be down).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from cidadao.logs import get_logger

log = get_logger(__name__)
WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    retry_after: int  # seconds until the window resets


class Limiter(Protocol):
    limit: int

    async def hit(self, bucket: str) -> Verdict: ...


def bucket_for(client_ip: str | None, credential: str | None) -> str:
    """Callers with a credential are counted per credential, anonymous ones per IP."""
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:24]
    return f"ip:{client_ip or 'unknown'}"


def _window(now: float) -> tuple[int, int]:
    window = int(now // WINDOW_SECONDS)
    return window, int((window + 1) * WINDOW_SECONDS - now) + 1


class MemoryLimiter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window = -1
        self._counts: dict[str, int] = {}

    async def hit(self, bucket: str) -> Verdict:
        window, retry_after = _window(time.time())
        if window != self._window:  # a new window forgets the old one: memory stays bounded
            self._window, self._counts = window, {}
        count = self._counts.get(bucket, 0) + 1
        self._counts[bucket] = count
        return Verdict(count <= self.limit, max(self.limit - count, 0), retry_after)


class RedisLimiter:
    def __init__(self, url: str, limit: int) -> None:
        self.limit = limit
        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)

    async def hit(self, bucket: str) -> Verdict:
        window, retry_after = _window(time.time())
        key = f"cidadao:ratelimit:{bucket}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS + 5)
                count, _ = await pipe.execute()
        except Exception as error:  # fail open; see module docstring
            log.warning("ratelimit_backend_unavailable", error=str(error))
            return Verdict(True, self.limit, retry_after)
        return Verdict(int(count) <= self.limit, max(self.limit - int(count), 0), retry_after)

    async def close(self) -> None:
        await self._redis.aclose()


def make_limiter(redis_url: str | None, limit: int) -> MemoryLimiter | RedisLimiter:
    return RedisLimiter(redis_url, limit) if redis_url else MemoryLimiter(limit)
