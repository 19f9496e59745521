"""Where a request to a predictor goes.

One URL (``make run``, or a predictor Service without discovery) is one replica. With discovery
(``GATEWAY_ASR_REPLICAS_URL``: a URL whose host name is a headless Service's, which the chart sets)
every address that name resolves to is a replica, looked up again every ``refresh`` seconds: a pod
that is not ready (starting, or draining after SIGTERM) leaves the DNS answer, a new one joins it.

Each request goes to the replica with the least load: the requests this gateway has outstanding there
(counted exactly: from the choice until the answer is read) plus the others' (other gateway replicas):
what the replica last said of itself (every predictor answer carries its admission state,
``AdmissionState``, and an idle replica is asked every ``refresh`` seconds on its readiness route)
less this gateway's own requests at that moment. A report never makes the gateway forget a request it
sent after the report was made (which would send one request too many to a full replica). A replica
that refused a request before working on it (429 full, 503 draining, no connection) is passed over
for that request and, for a while, by every request (its Retry-After; a draining one until it leaves
the DNS answer); the caller then tries the next one. DNS rather than the Kubernetes API: no client
library, no RBAC, and kube-proxy's Service stays the fallback when the name does not resolve.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from services.common.admission import ADMISSION_HEADER, AdmissionState

log = logging.getLogger(__name__)
UNREACHABLE_SECONDS = 5.0  # a replica that refused the connection is left alone this long
DRAINING_SECONDS = 30.0  # ... one that answered "shutting down" (it leaves the DNS answer sooner)


@dataclass(eq=False)
class Replica:
    url: str
    state: AdmissionState | None = None  # what it last said of itself
    outstanding: int = 0  # requests of this gateway there now (chosen, answer not yet read)
    others: int = 0  # requests of other gateways there, at its last report
    avoid_until: float = 0.0  # monotonic time until which it is passed over
    reason: str = ""  # why it is avoided (busy, draining, unreachable)

    def score(self) -> float:
        """Requests per place to work on them, as far as this gateway knows."""
        places = self.state.max_active if self.state else 1
        return (self.outstanding + self.others) / max(1, places)

    def observe(self, response: httpx.Response) -> None:
        state = AdmissionState.parse(response.headers.get(ADMISSION_HEADER))
        if state is not None:
            self.state = state
            self.others = max(0, state.active + state.waiting - self.outstanding)

    def finished(self) -> None:
        """A request chosen for this replica was answered (or never reached it)."""
        self.outstanding = max(0, self.outstanding - 1)

    def avoid(self, seconds: float, reason: str) -> None:
        self.avoid_until, self.reason = time.monotonic() + seconds, reason


@dataclass
class ReplicaSet:
    """The replicas of one predictor (``label``: ASR or TTS)."""

    label: str
    url: str  # the predictor's URL (a Service, or one process)
    discovery: str | None = None  # a URL whose host resolves to every replica's address
    refresh: float = 2.0
    replicas: dict[str, Replica] = field(default_factory=dict)
    _looked_up: float = -1e9

    def __post_init__(self) -> None:
        self.replicas = {self.url: Replica(self.url)}

    def choose(self, tried: set[Replica]) -> Replica | None:
        """The least loaded replica not yet tried for this request; an avoided one only when nothing
        else is left (its refusal may be over by now); None when every replica was tried."""
        left = [r for r in self.replicas.values() if r not in tried]
        if not left:
            return None
        now = time.monotonic()
        fresh = [r for r in left if r.avoid_until <= now] or left
        best = min(r.score() for r in fresh)
        replica = random.choice([r for r in fresh if r.score() == best])  # noqa: S311 - spreading, not secrecy
        replica.outstanding += 1  # the caller calls ``finished`` once the answer is read
        return replica

    @property
    def many(self) -> bool:
        return len(self.replicas) > 1

    async def discover(self) -> None:
        """Look the discovery name up again (at most every ``refresh`` seconds); keep what is known of
        replicas that stay. A failed lookup keeps the last answer (or the Service URL)."""
        if self.discovery is None or time.monotonic() - self._looked_up < self.refresh:
            return
        self._looked_up = time.monotonic()
        parts = urlsplit(self.discovery)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("%s replicas: looking up %s failed: %s", self.label, parts.hostname, exc)
            return
        addresses = sorted({str(info[4][0]) for info in found})
        urls = [f"{parts.scheme}://{_host(a)}:{port}" for a in addresses]
        if urls and set(urls) != set(self.replicas):
            log.info("%s replicas: %s", self.label, ", ".join(urls))
            self.replicas = {u: self.replicas.get(u) or Replica(u) for u in urls}

    async def poll(self, client: httpx.AsyncClient) -> None:
        """Ask every replica that has not answered lately for its state (its readiness route: cheap,
        never waits for a model); a draining one says so there."""
        if not self.many:
            return
        await asyncio.gather(*(self._ask(client, r) for r in list(self.replicas.values())))

    async def _ask(self, client: httpx.AsyncClient, replica: Replica) -> None:
        try:
            response = await client.get(f"{replica.url}/readyz", timeout=self.refresh)
        except httpx.HTTPError:
            replica.avoid(UNREACHABLE_SECONDS, "unreachable")
            return
        replica.observe(response)
        if response.status_code == 503:
            replica.avoid(DRAINING_SECONDS, "draining")
        elif replica.reason in ("draining", "unreachable"):
            replica.avoid_until, replica.reason = 0.0, ""

    async def keep_current(self, client: httpx.AsyncClient) -> None:
        """The background loop of one gateway: discovery and state, every ``refresh`` seconds."""
        while True:
            try:
                await self.discover()
                await self.poll(client)
            except Exception:  # a loop that must outlive any single failure
                log.exception("%s replicas: refreshing failed", self.label)
            await asyncio.sleep(self.refresh)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
