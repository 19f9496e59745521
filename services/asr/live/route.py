"""The live transcription route of the ASR predictor: ``WS /v2/models/<name>/live``, one WebSocket per
realtime session of the gateway (``services.common.live_wire``). Refused at the handshake with an
HTTP error while draining (503) or when ``ASR_LIVE_MAX_SESSIONS`` sessions are open (429); the same
token as inference. Audio arrives as binary frames, control as JSON text; events go back as JSON,
through a bounded queue (a gateway that stops reading closes the session)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from services.asr.live.session import Decode, LiveConfig, LiveError, LiveSession, Translator
from services.asr.settings import AsrSettings
from services.common import live_wire as wire
from services.common.asgi import deny_websocket
from services.common.draining import Drain
from services.common.errors import Overloaded, ServiceError, Unavailable
from services.common.logs import REQUEST_ID

log = logging.getLogger(__name__)
EVENT_BACKLOG = 256  # events waiting for the gateway to read them


Score = Callable[[np.ndarray], list[float]]


def add_live_route(
    app: FastAPI,
    name: str,
    *,
    decode: Decode,
    score: Score,
    settings: AsrSettings,
    drain: Drain,
    translator: Translator | None = None,
) -> None:
    """``decode``: one Whisper decode of a turn (``AsrEngine.live``); ``score``: VAD speech probabilities;
    ``translator``: text translation for translation sessions into languages other than English."""
    open_sessions = [0]

    @app.websocket(f"/v2/models/{name}/live")
    async def live(ws: WebSocket) -> None:
        refusal: ServiceError | None = None
        if drain.draining:
            refusal = Unavailable("ASR backend is shutting down", code="shutting_down", headers={"Retry-After": "1"})
        elif open_sessions[0] >= settings.live_max_sessions:
            refusal = Overloaded(
                f"ASR backend has {settings.live_max_sessions} live sessions open",
                code="server_busy",
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        if refusal is not None:
            await deny_websocket(ws.scope, ws.send, refusal)
            return
        open_sessions[0] += 1  # counted before the first await: concurrent handshakes cannot pass the cap
        drain.in_flight += 1
        try:
            await ws.accept()
            await serve(ws, decode, score, settings, translator)
        finally:
            open_sessions[0] -= 1
            drain.in_flight -= 1


async def serve(
    ws: WebSocket, decode: Decode, score: Score, settings: AsrSettings, translator: Translator | None = None
) -> None:
    REQUEST_ID.set(ws.headers.get("x-request-id") or "-")
    events: asyncio.Queue[dict | None] = asyncio.Queue(EVENT_BACKLOG)
    writer = asyncio.create_task(_write(ws, events))

    async def emit(event: dict) -> None:
        await events.put(event)

    session = LiveSession(
        LiveConfig(),
        decode,
        score,
        emit,
        max_buffer_seconds=settings.live_max_buffer_seconds,
        max_items=settings.live_max_items,
        translator=translator,
    )
    clean, frames = False, 0
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                clean = message.get("code") == 1000
                break
            frames += message.get("bytes") is not None
            await _handle(session, message, emit, frames)
    except WebSocketDisconnect:
        pass
    finally:
        await session.close(finish=clean)
        with contextlib.suppress(asyncio.QueueFull):
            events.put_nowait(None)
        if clean:  # the gateway closed it: what was committed is answered first
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=10)
        writer.cancel()


async def _handle(
    session: LiveSession, message: MutableMapping[str, Any], emit: Callable[[dict], Awaitable[None]], frames: int
) -> None:
    """An audio frame's error names the frame (its number in the session), a control message's its event_id."""
    event_id: Any = None
    try:
        if message.get("bytes") is not None:
            try:
                await session.audio(message["bytes"])
            except LiveError as exc:
                await emit({"type": wire.ERROR, "code": exc.code, "message": exc.message, "param": exc.param,
                            "frame": frames})  # fmt: skip
            return
        control = json.loads(message.get("text") or "{}")
        event_id, kind = control.get("event_id"), control.get("type")
        if kind == wire.CONFIGURE:
            await session.configure(LiveConfig.from_wire(control))
            await emit({"type": wire.CONFIGURED, "event_id": event_id})
        elif kind == wire.COMMIT:
            await session.commit()
        elif kind == wire.CLEAR:
            await session.clear()
        else:
            raise LiveError(f"unknown control message {str(kind)[:32]!r}", "invalid_value", "type")
    except LiveError as exc:
        await emit({"type": wire.ERROR, "code": exc.code, "message": exc.message, "param": exc.param,
                    "event_id": event_id})  # fmt: skip
    except (ValueError, RecursionError):
        await emit({"type": wire.ERROR, "code": "invalid_json", "message": "malformed control message",
                    "param": None, "event_id": None})  # fmt: skip


async def _write(ws: WebSocket, events: asyncio.Queue[dict | None]) -> None:
    while (event := await events.get()) is not None:
        try:
            await ws.send_text(json.dumps(event))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
