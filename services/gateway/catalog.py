"""Which public model ids exist: the predictors are the one place that decides it (``ASR_MODELS``'
keys, ``TTS_PUBLIC_MODELS``); the gateway asks them (``GET /models``) and keeps the answer for a while.

While a predictor cannot be asked and nothing is known yet, its models are left out of the list and
a request naming one goes on to the predictor, whose own answer (or failure) the client then gets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.common.errors import ServiceError
from services.gateway.backends import Backend

log = logging.getLogger(__name__)
FAILED_RETRY_SECONDS = 5.0


class ModelCatalog:
    def __init__(
        self, backends: dict[str, Backend], ttl: float, on_update: Callable[[list[str]], None] | None = None
    ) -> None:
        self.backends, self.ttl = backends, ttl  # kind ("transcription", "speech") -> its predictor
        self.on_update = on_update  # told every list fetched (the metrics' allowed label values)
        self._known: dict[str, list[str]] = {}
        self._fetched: dict[str, float] = {}
        self._locks = {kind: asyncio.Lock() for kind in backends}

    async def ids(self, kind: str) -> list[str] | None:
        """The kind's model ids, or None when its predictor has never answered."""
        if time.monotonic() - self._fetched.get(kind, -1e9) > self.ttl:
            async with self._locks[kind]:
                if time.monotonic() - self._fetched.get(kind, -1e9) > self.ttl:
                    await self._refresh(kind)
        return self._known.get(kind)

    async def _refresh(self, kind: str) -> None:
        try:
            doc = await self.backends[kind].get_json("/models")
            ids = [str(i) for i in doc["data"]]
        except (ServiceError, KeyError, TypeError) as exc:
            log.warning("could not list the %s models: %s", kind, getattr(exc, "message", exc))
            # keep what was known, and ask again only after a while: a predictor that is down must not
            # cost every request a failed call under the lock
            self._fetched[kind] = time.monotonic() - self.ttl + min(self.ttl, FAILED_RETRY_SECONDS)
            return
        self._known[kind], self._fetched[kind] = ids, time.monotonic()
        if self.on_update is not None:
            self.on_update(ids)

    async def knows(self, kind: str, model: str) -> bool | None:
        """True/False when the kind's list is known, None when it is not."""
        ids = await self.ids(kind)
        return None if ids is None else model in ids

    async def all(self) -> list[tuple[str, str]]:
        """(id, kind) of every model the reachable predictors serve."""
        out = []
        for kind in self.backends:
            out += [(i, kind) for i in await self.ids(kind) or []]
        return out
