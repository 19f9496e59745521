"""Graceful shutdown shared by the three services.

On SIGTERM (or SIGINT) a server keeps listening but drains: requests in flight run to completion,
new ones get a 503 with ``Retry-After`` (the SDKs retry, by then elsewhere), and readiness reports
not ready. The server stops once nothing is in flight or the grace period is over; whatever still
runs then is cancelled (model work stops at its next batch or chunk). A second signal stops at once.
"""

from __future__ import annotations

import logging
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.asgi import send_error
from services.common.errors import Unavailable

log = logging.getLogger(__name__)


class Drain:
    """In-flight accounting and the draining switch of one server."""

    def __init__(self, label: str, grace_seconds: float, exempt: tuple[str, ...] = ()) -> None:
        self.label, self.grace_seconds, self.exempt = label, grace_seconds, exempt
        self.in_flight = 0
        self.deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self) -> None:
        if not self.draining:
            self.deadline = time.monotonic() + self.grace_seconds
            log.info("draining: %d request(s) in flight, up to %.0f s", self.in_flight, self.grace_seconds)

    def finished(self) -> bool:
        return self.draining and (self.in_flight == 0 or time.monotonic() >= (self.deadline or 0))


DISCARD_LIMIT = 64 * 1024 * 1024


async def discard_body(receive: Receive, limit: int = DISCARD_LIMIT) -> None:
    """Read a refused request's body (up to ``limit``) before answering: a server that closes with
    unread bytes in its socket makes the kernel reset the connection, and the client may then lose
    the answer (a 503 that becomes a broken connection)."""
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class DrainGate:
    """Counts requests in flight; while draining, refuses new ones (paths in ``exempt`` always pass)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.drain.exempt:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await discard_body(receive)
            await send_error(
                send,
                Unavailable(
                    f"{self.drain.label} is shutting down; retry shortly",
                    code="shutting_down",
                    headers={"Retry-After": "1", "Connection": "close"},
                ),
            )
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn, but a stop signal starts a drain instead of closing the listening socket."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self.drain.begin()

    async def on_tick(self, counter: int) -> bool:
        if self.drain.finished():
            if self.drain.in_flight:
                log.warning("grace period over: cancelling %d request(s)", self.drain.in_flight)
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: ASGIApp, drain: Drain, host: str, port: int, *, keep_alive: int = 5, **options: Any) -> None:
    """Run ``app`` with uvicorn until a stop signal has drained it (our access log replaces uvicorn's)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=keep_alive,
        **options,
    )
    DrainingServer(config, drain).run()
