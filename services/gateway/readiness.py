"""The gateway's readiness: not while it drains, and not while none of its predictors answers (such a
gateway can serve nothing but errors). One predictor down leaves the gateway ready: the other half of
the API still works, and every gateway replica shares the same predictors, so taking them out of the
Service would only turn that half's answers into the Ingress's 503s. The body names each predictor's
state either way. Probes are shared and kept for a moment, so a probing kubelet costs the predictors
at most one request each per ``ttl``."""

from __future__ import annotations

import asyncio
import time

from services.gateway.backends import Backend

PROBE_TTL_SECONDS = 2.0


class Readiness:
    def __init__(self, backends: dict[str, Backend], ttl: float = PROBE_TTL_SECONDS) -> None:
        self.backends, self.ttl = backends, ttl
        self._states: dict[str, str] = {}
        self._checked = -1e9
        self._lock = asyncio.Lock()

    async def states(self) -> dict[str, str]:
        """``{"asr": "ready" | "unavailable", ...}``, probed at most once per ``ttl``."""
        async with self._lock:
            if time.monotonic() - self._checked > self.ttl:
                answers = await asyncio.gather(*(b.ready() for b in self.backends.values()))
                self._states = {
                    k: "ready" if ok else "unavailable" for k, ok in zip(self.backends, answers, strict=True)
                }
                self._checked = time.monotonic()
            return dict(self._states)

    async def ready(self) -> tuple[bool, dict[str, str]]:
        states = await self.states()
        return any(state == "ready" for state in states.values()), states
