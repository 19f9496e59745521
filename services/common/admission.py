"""Admission control of one predictor: at most ``max_active`` requests worked on, at most
``max_queue`` waiting for a place; anything beyond is refused at once (429 with ``Retry-After``)
instead of piling up behind work that clients may have given up on.

A request is admitted before its body is read (so a refused one costs nothing) and waits for an
active place holding only its compressed upload, never decoded audio. Its place is given back when
its work has really stopped: a worker thread that outlives its request keeps the place until it
ends, so the CPU or GPU is never oversubscribed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.errors import Overloaded

ADMISSION_HEADER = "x-speech-admission"  # on every predictor answer: its load then (replica-aware routing)


@dataclass(frozen=True)
class AdmissionState:
    """A predictor's admission state as its answers carry it: ``active=1; waiting=0; max-active=4;
    max-queue=8``."""

    active: int
    waiting: int
    max_active: int
    max_queue: int

    def header(self) -> str:
        return f"active={self.active}; waiting={self.waiting}; max-active={self.max_active}; max-queue={self.max_queue}"

    @classmethod
    def parse(cls, value: str | None) -> AdmissionState | None:
        """The state in a header, or None when it is missing or malformed (never an error)."""
        try:
            fields = dict(part.strip().split("=", 1) for part in (value or "").split(";"))
            return cls(*(int(fields[k]) for k in ("active", "waiting", "max-active", "max-queue")))
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def load(self) -> float:
        """Requests in the predictor per place to work on them (1.0: every place taken, none waiting)."""
        return (self.active + self.waiting) / max(1, self.max_active)

    @property
    def full(self) -> bool:
        return self.active + self.waiting >= self.max_active + self.max_queue


class Admission:
    def __init__(
        self,
        label: str,
        max_active: int,
        max_queue: int,
        retry_after: int,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.label, self.max_active, self.max_queue, self.retry_after = label, max_active, max_queue, retry_after
        self.on_wait = on_wait  # seconds each admitted request waited for its place
        self.admitted = 0  # waiting + active
        self.active = 0
        self._places = asyncio.Semaphore(max_active)

    @property
    def waiting(self) -> int:
        return self.admitted - self.active

    def admit(self) -> Ticket:
        if self.admitted >= self.max_active + self.max_queue:
            raise Overloaded(
                f"{self.label} is at capacity ({self.max_active} in progress, {self.max_queue} queued); "
                "retry after the indicated time",
                code="server_busy",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.admitted += 1
        return Ticket(self)

    def state(self) -> AdmissionState:
        return AdmissionState(self.active, self.waiting, self.max_active, self.max_queue)

    def status(self) -> dict:
        return {
            "active": self.active,
            "waiting": self.waiting,
            "max_active": self.max_active,
            "max_queue": self.max_queue,
        }


class Ticket:
    """One admitted request: ``await ticket.start()`` waits for an active place; ``done()`` (exactly
    once, when the work has stopped) gives back both."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._active = False
        self._closed = False

    async def start(self) -> None:
        adm = self._admission
        queued = time.perf_counter()
        await adm._places.acquire()
        self._active = True
        adm.active += 1
        if adm.on_wait is not None:
            adm.on_wait(time.perf_counter() - queued)

    def done(self) -> None:
        if self._closed:
            return
        self._closed = True
        adm = self._admission
        adm.admitted -= 1
        if self._active:
            adm.active -= 1
            adm._places.release()
