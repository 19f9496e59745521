"""What the gateway's WebSocket routes share: a handshake refused while the gateway drains (503) or
when the route's sessions are all open (429); a session counted from before its first await (so
concurrent handshakes cannot pass the limit) until it ends, and waited for by a drain; the live ASR
session a realtime route opens before it answers the handshake."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import WebSocket
from websockets.asyncio.client import ClientConnection

from services.common.asgi import deny_websocket
from services.common.errors import Overloaded, ServiceError, Unavailable

SUBPROTOCOL = "realtime"  # offered by OpenAI's browser clients with the key's subprotocol


def refusal(state: Any, open_now: int, limit: int, what: str, retry_after: float) -> ServiceError | None:
    if state.drain.draining:
        return Unavailable(
            "the gateway is shutting down; reconnect shortly", code="shutting_down", headers={"Retry-After": "1"}
        )
    if open_now >= limit:
        return Overloaded(
            f"all {limit} {what} are in use; retry shortly",
            code="server_busy",
            headers={"Retry-After": str(retry_after)},
        )
    return None


@contextlib.contextmanager
def counted(state: Any, counter: str) -> Iterator[None]:
    """``state.<counter>`` and the drain's in-flight count hold this session until it ends."""
    setattr(state, counter, getattr(state, counter) + 1)
    state.drain.in_flight += 1
    try:
        yield
    finally:
        setattr(state, counter, getattr(state, counter) - 1)
        state.drain.in_flight -= 1


async def accept(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)


async def open_live(websocket: WebSocket, state: Any) -> ClientConnection | None:
    """The key's audio admitted and the ASR predictor's live session opened, then the handshake
    accepted; or the handshake refused with the reason (an HTTP error) and None."""
    try:
        await state.tenancy.audio_admission(websocket.scope)  # the key has audio left this hour
        upstream = await state.asr.live()
    except ServiceError as exc:
        await deny_websocket(websocket.scope, websocket.send, exc)
        return None
    await accept(websocket)
    return upstream
