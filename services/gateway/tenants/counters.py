"""Usage counters per key, in fixed windows (a minute for requests, an hour for audio and characters),
and realtime session slots. ``RedisCounters`` keeps them in Redis, so every gateway replica counts
against the same limit (each change one atomic script); ``MemoryCounters`` in this process (no store:
``make run``, one replica). Both answer the same questions the same way."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Mode = Literal["fit", "under", "add"]  # fit: used + amount <= limit; under: used < limit; add: always


@dataclass(frozen=True)
class Count:
    allowed: bool
    used: float
    reset_seconds: float  # until this window ends


class Counters(Protocol):
    async def take(self, name: str, amount: float, limit: float, window: int, mode: Mode) -> Count: ...
    async def peek(self, name: str, window: int) -> Count: ...
    async def enter(self, name: str, session: str, limit: int, ttl: float) -> tuple[bool, int]: ...
    async def leave(self, name: str, session: str) -> None: ...
    async def close(self) -> None: ...


def window_of(window: int, now: float) -> tuple[int, float]:
    start = int(now // window * window)
    return start, start + window - now


class MemoryCounters:
    def __init__(self) -> None:
        self.values: dict[tuple[str, int, int], float] = {}
        self.sessions: dict[str, dict[str, float]] = {}

    async def take(self, name: str, amount: float, limit: float, window: int, mode: Mode) -> Count:
        start, reset = window_of(window, time.time())
        key = (name, window, start)
        used = self.values.get(key, 0.0)
        if (mode == "fit" and used + amount > limit) or (mode == "under" and used >= limit):
            return Count(False, used, reset)
        self.values = {k: v for k, v in self.values.items() if k[2] + k[1] > time.time()}  # old windows go
        self.values[key] = used + amount
        return Count(True, used + amount, reset)

    async def peek(self, name: str, window: int) -> Count:
        start, reset = window_of(window, time.time())
        return Count(True, self.values.get((name, window, start), 0.0), reset)

    async def enter(self, name: str, session: str, limit: int, ttl: float) -> tuple[bool, int]:
        now = time.time()
        live = {s: t for s, t in self.sessions.get(name, {}).items() if t > now}
        if session not in live and len(live) >= limit:
            self.sessions[name] = live
            return False, len(live)
        live[session] = now + ttl
        self.sessions[name] = live
        return True, len(live)

    async def leave(self, name: str, session: str) -> None:
        self.sessions.get(name, {}).pop(session, None)

    async def close(self) -> None:
        return None


# KEYS[1] the counter; ARGV: amount, limit, ttl, mode. Returns {allowed, used as a string}.
TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, limit, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4]
if (mode == 'fit' and used + amount > limit) or (mode == 'under' and used >= limit) then
  return {0, tostring(used)}
end
local now = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, now}
"""
# KEYS[1] the key's sessions (a sorted set: member session id, score its expiry); ARGV: session, limit,
# now, expiry. Returns {allowed, sessions}.
ENTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and held >= tonumber(ARGV[2]) then
  return {0, held}
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) - tonumber(ARGV[3])) + 1)
return {1, redis.call('ZCARD', KEYS[1])}
"""


class RedisCounters:
    """Counters in Redis (``redis.asyncio``): keys ``speech-stack:<window>:<start>:<name>`` expiring
    with their window, sessions in ``speech-stack:sessions:<name>``. Errors reach the caller (the
    quota decides: fail open or closed)."""

    def __init__(self, url: str, password: str | None, timeout: float) -> None:
        import redis.asyncio as redis

        self.client: Any = redis.Redis.from_url(
            url, password=password, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._take = self.client.register_script(TAKE)
        self._enter = self.client.register_script(ENTER)

    async def take(self, name: str, amount: float, limit: float, window: int, mode: Mode) -> Count:
        start, reset = window_of(window, time.time())
        key = f"speech-stack:{window}:{start}:{name}"
        allowed, used = await self._take(keys=[key], args=[amount, limit, window + 5, mode])
        return Count(bool(allowed), float(used), reset)

    async def peek(self, name: str, window: int) -> Count:
        start, reset = window_of(window, time.time())
        used = await self.client.get(f"speech-stack:{window}:{start}:{name}")
        return Count(True, float(used or 0), reset)

    async def enter(self, name: str, session: str, limit: int, ttl: float) -> tuple[bool, int]:
        now = time.time()
        allowed, held = await self._enter(
            keys=[f"speech-stack:sessions:{name}"], args=[session, limit, now, now + math.ceil(ttl)]
        )
        return bool(allowed), int(held)

    async def leave(self, name: str, session: str) -> None:
        await self.client.zrem(f"speech-stack:sessions:{name}", session)

    async def close(self) -> None:
        await self.client.aclose()
