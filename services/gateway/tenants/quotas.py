"""Per-key limits, decided before any work. Requests are counted per minute and characters (speech)
per hour as they arrive: a request that would pass the limit is refused. Audio seconds
(transcription, translation, realtime) are known only once the audio is decoded, so a request is
admitted while the key has any audio left in the hour and its whole length is charged when known: the
request that crosses the limit finishes, the next one is refused until the window frees. Realtime
sessions at once are slots with a lease (a gateway that dies frees its slots within ``LEASE_SECONDS``).

Refusals are 429 ``rate_limit_exceeded`` with ``Retry-After`` (capped at 120 s, which the SDKs honour);
every answer carries OpenAI-style ``x-ratelimit-limit-*``, ``-remaining-*`` and ``-reset-*`` headers
for each limit the key has (``requests``, ``characters``, ``audio-seconds``). When the store fails the
decision follows ``GATEWAY_QUOTA_STORE_FAILURE``: ``open`` admits (and counts nothing), ``closed``
answers 503."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from services.common.errors import ServiceError, Unavailable
from services.gateway.tenants.counters import Count, Counters, Mode
from services.gateway.tenants.keys import ApiKey

log = logging.getLogger(__name__)
MINUTE, HOUR = 60, 3600
LEASE_SECONDS = 90.0  # a realtime session's slot lives this long unless its gateway renews it
RENEW_SECONDS = 30.0
MAX_RETRY_AFTER = 120  # the SDKs wait at most this long; beyond they do not retry at all


class RateLimited(ServiceError):
    status, type = 429, "requests"

    def __init__(self, key: str, what: str, *, limit: float, used: float, asked: float, reset: float) -> None:
        wait = max(1, math.ceil(reset))
        super().__init__(
            f"Rate limit reached for key '{key}' on {what}: Limit {_number(limit)}, Used {_number(used)}, "
            f"Requested {_number(asked)}. Please try again in {wait}s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(min(wait, MAX_RETRY_AFTER))},
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def reset_text(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``1h2m3s``, ``250ms``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class Rule:
    header: str  # the x-ratelimit-*-<header> suffix
    what: str  # how the refusal names it
    window: int

    def headers(self, limit: float, count: Count) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{self.header}": _number(limit),
            f"x-ratelimit-remaining-{self.header}": _number(max(0.0, limit - count.used)),
            f"x-ratelimit-reset-{self.header}": reset_text(count.reset_seconds),
        }


REQUESTS = Rule("requests", "requests per min (RPM)", MINUTE)
CHARACTERS = Rule("characters", "characters per hour", HOUR)
AUDIO = Rule("audio-seconds", "audio seconds per hour", HOUR)


class StoreDown(Unavailable):
    pass


class Quotas:
    def __init__(self, counters: Counters, fail_open: bool, on_store_error: Callable[[], None]) -> None:
        self.counters, self.fail_open, self.on_store_error = counters, fail_open, on_store_error

    async def _take(self, key: ApiKey, rule: Rule, amount: float, limit: float, mode: Mode) -> Count | None:
        """The store's answer; None when it failed and the quota fails open."""
        try:
            return await self.counters.take(f"{rule.header}:{key.name}", amount, limit, rule.window, mode)
        except Exception as exc:  # noqa: BLE001 - any store failure: redis errors, timeouts, a closed pool
            self._store_failed(exc)
            return None

    def _store_failed(self, exc: Exception) -> None:
        """Counted and logged; raises StoreDown when the quota fails closed."""
        self.on_store_error()
        log.warning("quota store failed (%s): failing %s", type(exc).__name__, "open" if self.fail_open else "closed")
        if self.fail_open:
            return
        raise StoreDown("usage limits cannot be checked now; retry shortly", code="quota_store_unavailable",
                        headers={"Retry-After": "5"})  # fmt: skip

    async def request(self, key: ApiKey) -> dict[str, str]:
        """One more request; the headers for the answer, or RateLimited."""
        limit = key.limits.requests_per_minute
        if limit is None:
            return {}
        count = await self._take(key, REQUESTS, 1, limit, "fit")
        if count is None:
            return {}
        if not count.allowed:
            raise self._refusal(key, REQUESTS, limit, count, 1)
        return REQUESTS.headers(limit, count)

    async def characters(self, key: ApiKey, amount: int) -> dict[str, str]:
        limit = key.limits.characters_per_hour
        if limit is None:
            return {}
        count = await self._take(key, CHARACTERS, amount, limit, "fit")
        if count is None:
            return {}
        if not count.allowed:
            raise self._refusal(key, CHARACTERS, limit, count, amount)
        return CHARACTERS.headers(limit, count)

    async def audio_left(self, key: ApiKey) -> dict[str, str]:
        """Admission for audio work: some of the hour's audio left."""
        limit = key.limits.audio_seconds_per_hour
        if limit is None:
            return {}
        count = await self._take(key, AUDIO, 0, limit, "under")
        if count is None:
            return {}
        if not count.allowed:
            raise self._refusal(key, AUDIO, limit, count, 0)
        return AUDIO.headers(limit, count)

    async def charge_audio(self, key: ApiKey, seconds: float) -> Count | None:
        """The audio's length, once known (never refused: the work is done)."""
        limit = key.limits.audio_seconds_per_hour
        if limit is None or seconds <= 0:
            return None
        try:
            return await self.counters.take(f"{AUDIO.header}:{key.name}", seconds, limit, AUDIO.window, "add")
        except Exception as exc:  # noqa: BLE001
            self.on_store_error()
            log.warning("quota store failed charging audio (%s): not counted", type(exc).__name__)
            return None

    async def enter_session(self, key: ApiKey, session: str) -> None:
        limit = key.limits.realtime_sessions
        if limit is None:
            return
        try:
            allowed, held = await self.counters.enter(key.name, session, limit, LEASE_SECONDS)
        except Exception as exc:  # noqa: BLE001
            self._store_failed(exc)
            return
        if not allowed:
            error = RateLimited(key.name, "realtime sessions at once", limit=limit, used=held, asked=1,
                                reset=RENEW_SECONDS)  # fmt: skip
            error.message = f"Rate limit reached for key '{key.name}': {limit} realtime sessions are open."
            raise error

    async def renew_session(self, key: ApiKey, session: str) -> None:
        if key.limits.realtime_sessions is not None:
            try:
                await self.counters.enter(key.name, session, 1 << 30, LEASE_SECONDS)
            except Exception as exc:  # noqa: BLE001
                self.on_store_error()
                log.warning("quota store failed renewing a session (%s)", type(exc).__name__)

    async def leave_session(self, key: ApiKey, session: str) -> None:
        if key.limits.realtime_sessions is not None:
            try:
                await self.counters.leave(key.name, session)
            except Exception as exc:  # noqa: BLE001 - the lease frees the slot later
                self.on_store_error()
                log.warning("quota store failed freeing a session (%s)", type(exc).__name__)

    async def usage(self, key: ApiKey) -> dict[str, dict[str, float | None]]:
        """This window's use of each limit (the admin usage route)."""
        out: dict[str, dict[str, float | None]] = {}
        for rule, limit in ((REQUESTS, key.limits.requests_per_minute), (CHARACTERS, key.limits.characters_per_hour),
                            (AUDIO, key.limits.audio_seconds_per_hour)):  # fmt: skip
            count = await self.counters.peek(f"{rule.header}:{key.name}", rule.window)
            out[rule.header] = {"used": count.used, "limit": limit, "reset_seconds": round(count.reset_seconds, 1)}
        return out

    @staticmethod
    def _refusal(key: ApiKey, rule: Rule, limit: float, count: Count, asked: float) -> RateLimited:
        error = RateLimited(key.name, rule.what, limit=limit, used=count.used, asked=asked, reset=count.reset_seconds)
        error.headers |= rule.headers(limit, count)
        return error
