"""One Realtime transcription session: OpenAI's protocol on the client's side, the ASR predictor's live
session (``services.common.live_wire``) on the other. The gateway holds no audio and no model: the
client's audio goes on to the predictor once, as the bytes it came in (base64 decoded), and the
predictor's VAD, turns, partial and final text come back as events the gateway renders in OpenAI's
shape (GA or beta, as the session was asked).

Bounded: a message (``GATEWAY_REALTIME_MAX_EVENT_BYTES``), the events waiting for a client that reads
slowly (``OUTBOX_BYTES``; a client that stops reading is closed), the prompt, the session's idle time
(not counted while items are being transcribed) and its whole time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.common import live_wire as wire
from services.common.asgi import WS_CLOSE_SECONDS
from services.common.errors import echo
from services.common.logs import REQUEST_ID
from services.gateway.catalog import ModelCatalog
from services.gateway.realtime.config import ConfigError, SessionConfig, expires
from services.gateway.settings import GatewaySettings
from services.gateway.tenants.gate import key_of
from services.gateway.tenants.tenancy import Tenancy

log = logging.getLogger(__name__)
OUTBOX_BYTES = 1 << 20  # events waiting for the client; beyond, the client is not reading: closed
APPEND_IDS = 256  # append event_ids remembered for the predictor's errors about their audio
INLINE_DECODE = 64 << 10  # base64 decoded on the event loop up to this many characters, in a thread above


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def memory_bound(settings: GatewaySettings) -> int:
    """Bytes one session can hold at once: a message as received, its audio decoded, the outbox."""
    return settings.realtime_max_event_bytes * 7 // 4 + OUTBOX_BYTES


class SessionClosed(Exception):
    def __init__(self, code: int, reason: str, error: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


class ClientEventError(Exception):
    def __init__(self, message: str, code: str, param: str | None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class Outbox:
    """Events for the client, sent by one writer task; bounded in bytes."""

    def __init__(self, limit: int = OUTBOX_BYTES) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.bytes, self.limit = 0, limit
        self.overflowed = False
        self.room = asyncio.Event()  # set while at most half the limit waits: producers may wait on it
        self.room.set()

    def put(self, event: dict) -> None:
        text = json.dumps(event)
        if self.bytes + len(text) > self.limit:
            self.overflowed = True
            return
        self.bytes += len(text)
        self.queue.put_nowait(text)
        if self.bytes > self.limit // 2:
            self.room.clear()

    async def write(self, ws: WebSocket) -> None:
        while (text := await self.queue.get()) is not None:
            self.bytes -= len(text)
            if self.bytes <= self.limit // 2:
                self.room.set()
            try:
                await ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return


class RealtimeSession:
    def __init__(
        self,
        ws: WebSocket,
        settings: GatewaySettings,
        upstream: ClientConnection,
        catalog: ModelCatalog,
        tenancy: Tenancy,
        *,
        draining: Callable[[], bool],
        model: str | None,
        session_id: str,
    ) -> None:
        self.ws, self.settings, self.upstream, self.catalog, self.tenancy = ws, settings, upstream, catalog, tenancy
        self.over_quota: str | None = None  # the key's audio hour is used up: the session ends
        self.charging: set[asyncio.Task] = set()
        self.draining = draining
        self.id = session_id
        self.config = SessionConfig(model=model or SessionConfig.model, delay=settings.realtime_delay)
        self.started = time.monotonic()
        self.expires_at = expires(settings.realtime_max_session_seconds)
        self.outbox = Outbox()
        self.pending: set[str] = set()  # items committed and not yet completed or failed
        self.answered = asyncio.Event()  # set while nothing is pending
        self.last_item: str | None = None
        self.frames = 0  # audio frames sent to the predictor
        self.append_ids: dict[int, Any] = {}  # frame number -> the client's append event_id (recent ones)
        self.last_event = time.monotonic()

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        REQUEST_ID.set(self.id)
        writer = asyncio.create_task(self.outbox.write(self.ws))
        reader = asyncio.create_task(self._from_predictor())
        self.send(self.created())
        closing: SessionClosed | None = None
        try:
            await self._configure()
            closing = await self._from_client(reader)
        except SessionClosed as exc:
            closing = exc
        except (WebSocketDisconnect, ConnectionClosed):
            pass
        finally:
            await self._finish(closing, writer, reader)

    def created(self) -> dict:
        return {"type": "session.created", "session": self.config.render_ga(self.id, self.expires_at)}

    async def _from_client(self, reader: asyncio.Task) -> SessionClosed | None:
        while True:
            if (reason := self._reason_to_close(reader)) is not None:
                return reason
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=1.0)
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                return None
            self.last_event = time.monotonic()
            await self.handle(message)

    def _reason_to_close(self, reader: asyncio.Task) -> SessionClosed | None:
        return self._server_reason(reader) or self._session_reason()

    def _server_reason(self, reader: asyncio.Task) -> SessionClosed | None:
        """Shutdown, a client that does not read, a predictor that went away."""
        if self.draining():
            return SessionClosed(
                1001, "server shutting down", ("server_shutting_down", "The server is restarting; reconnect.")
            )
        if self.outbox.overflowed:
            return SessionClosed(1008, "client not reading")
        if reader.done():
            return SessionClosed(1011, "backend gone", ("backend_failed", "The ASR backend closed the session."))
        return None

    def _session_reason(self) -> SessionClosed | None:
        """The session's own limits: its length, the key's audio hour, idle time."""
        now, settings = time.monotonic(), self.settings
        if now - self.started > settings.realtime_max_session_seconds:
            limit = settings.realtime_max_session_seconds
            return SessionClosed(
                1000,
                "session expired",
                ("session_expired", f"The session reached its maximum duration of {limit:.0f} s."),
            )
        if self.over_quota is not None:
            return SessionClosed(1000, "rate limit", ("rate_limit_exceeded", self.over_quota))
        if not self.pending and now - self.last_event > settings.realtime_idle_seconds:
            idle = settings.realtime_idle_seconds
            return SessionClosed(1000, "idle", ("session_idle", f"No event for {idle:.0f} s."))
        return None

    async def _finish(self, closing: SessionClosed | None, writer: asyncio.Task, reader: asyncio.Task) -> None:
        clean = closing is not None and closing.code != 1008
        if clean and self.busy() and not reader.done():  # a clean close: the committed items are answered
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout=self.settings.shutdown_grace_seconds)
        with contextlib.suppress(Exception):  # the predictor's session ends: its work for this client stops
            await self.upstream.close(1000 if clean else 1001)
        reader.cancel()
        self._last_events(closing)
        self.outbox.queue.put_nowait(None)
        if closing is not None and closing.code == 1008:
            writer.cancel()  # nobody reads: do not wait for the backlog
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await writer
        if closing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(closing.code, closing.reason), WS_CLOSE_SECONDS)
        log.info("realtime session %s ended (%s)", self.id, closing.reason if closing else "client closed")

    def busy(self) -> bool:
        """Work a clean close waits for: items committed and not yet answered."""
        return bool(self.pending)

    def _last_events(self, closing: SessionClosed | None) -> None:
        if closing is not None and closing.error is not None:  # the server's side (1001, 1011) or the session's
            kind = "server_error" if closing.code in (1001, 1011) else "invalid_request_error"
            self.error(closing.error[1], closing.error[0], type_=kind)

    async def _drained(self) -> None:
        if self.pending:
            self.answered.clear()
            await self.answered.wait()

    def _answered(self, item_id: str) -> None:
        self.pending.discard(item_id)
        if not self.pending:
            self.answered.set()

    def send(self, event: dict) -> None:
        self.outbox.put({"event_id": new_id("event"), **event})

    def error(
        self,
        message: str,
        code: str,
        *,
        param: str | None = None,
        event_id: Any = None,
        type_: str = "invalid_request_error",
    ) -> None:
        shown = echo(event_id) if event_id is not None else None  # a client's id is quoted back bounded
        self.send(
            {
                "type": "error",
                "error": {"type": type_, "code": code, "message": message, "param": param, "event_id": shown},
            }
        )

    # -- client events ----------------------------------------------------------------------------
    async def handle(self, message: Mapping[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            self.error("Events are JSON text frames; a binary frame is not an event.", "invalid_event")
            return
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):  # invalid, or nested too deep to parse
            self.error("The event is not valid JSON.", "invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("An event is a JSON object with a string 'type'.", "invalid_event", param="type")
            return
        event_id = event.get("event_id")
        try:
            await self.dispatch(event["type"], event, event_id)
        except ConfigError as exc:
            self.error(exc.message, "invalid_value", param=exc.param, event_id=event_id)
        except ClientEventError as exc:
            self.error(exc.message, exc.code, param=exc.param, event_id=event_id)

    async def dispatch(self, kind: str, event: dict, event_id: Any) -> None:
        if kind == "session.update":
            await self.update(event.get("session"), beta=False)
        elif kind == "transcription_session.update":
            await self.update(event.get("session"), beta=True)
        elif kind == "input_audio_buffer.append":
            await self.append(event.get("audio"), event_id)
        elif kind == "input_audio_buffer.commit":
            await self._control(wire.COMMIT, event_id)
        elif kind == "input_audio_buffer.clear":
            await self._control(wire.CLEAR, event_id)
        else:
            raise ClientEventError(
                f"Invalid value: '{echo(kind)}'. A transcription session takes session.update, "
                "transcription_session.update and input_audio_buffer.append, .commit and .clear.",
                "invalid_value",
                "type",
            )

    async def update(self, session: Any, *, beta: bool) -> None:
        config = self.config.update_beta(session) if beta else self.config.update_ga(session)
        if config.model != self.config.model and await self.catalog.knows("transcription", config.model) is False:
            served = await self.catalog.ids("transcription")
            raise ConfigError(
                f"The model '{echo(config.model)}' does not exist or is not a transcription model; use one of {served}",
                "session.audio.input.transcription.model",
            )
        self.config = config
        await self._configure()
        if beta:
            self.send(
                {"type": "transcription_session.updated", "session": config.render_beta(self.id, self.expires_at)}
            )
        else:
            self.send({"type": "session.updated", "session": config.render_ga(self.id, self.expires_at)})

    async def _configure(self) -> None:
        await self.upstream.send(json.dumps({"type": wire.CONFIGURE, **self.config.wire()}))

    async def _control(self, kind: str, event_id: Any) -> None:
        await self.upstream.send(json.dumps({"type": kind, "event_id": echo(event_id) if event_id else None}))

    async def append(self, audio: Any, event_id: Any) -> None:
        if not isinstance(audio, str):
            raise ClientEventError(
                "input_audio_buffer.append needs 'audio': base64-encoded audio", "invalid_value", "audio"
            )
        try:
            data = (
                base64.b64decode(audio, validate=True)
                if len(audio) <= INLINE_DECODE
                else await asyncio.to_thread(base64.b64decode, audio, validate=True)
            )
        except (binascii.Error, ValueError):
            raise ClientEventError("'audio' is not valid base64", "invalid_value", "audio") from None
        if self.config.format == "audio/pcm" and len(data) % 2:
            raise ClientEventError(
                "audio/pcm audio is 16-bit: an odd number of bytes cannot be PCM16", "invalid_value", "audio"
            )
        if data:
            await self.forward(data, event_id)

    async def forward(self, data: bytes, event_id: Any) -> None:
        """Decoded audio on to the predictor; the append's event_id kept for errors about it."""
        await self.upstream.send(data)
        self.frames += 1
        if event_id is not None:
            self.append_ids[self.frames] = echo(event_id)
            if len(self.append_ids) > APPEND_IDS:
                del self.append_ids[next(iter(self.append_ids))]

    # -- the predictor's events -------------------------------------------------------------------
    async def _from_predictor(self) -> None:
        async for raw in self.upstream:
            try:
                event = json.loads(raw)
            except (ValueError, TypeError):
                continue
            self._render(event)

    def _render(self, event: dict[str, Any]) -> None:
        kind, item_id = event.get("type"), event.get("item_id")
        base = {"item_id": item_id, "content_index": 0}
        if kind == wire.SPEECH_STARTED:
            self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "item_id": item_id,
                    "audio_start_ms": event["audio_start_ms"],
                }
            )
        elif kind == wire.SPEECH_STOPPED:
            self.send(
                {"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": event["audio_end_ms"]}
            )
        elif kind == wire.TIMEOUT:
            self.send(
                {
                    "type": "input_audio_buffer.timeout_triggered",
                    "item_id": item_id,
                    "audio_start_ms": event["audio_start_ms"],
                    "audio_end_ms": event["audio_end_ms"],
                }
            )
        elif kind == wire.COMMITTED:
            self._committed(str(item_id))
        elif kind == wire.CLEARED:
            self.send({"type": "input_audio_buffer.cleared"})
        elif kind == wire.DELTA:
            self.send({"type": "conversation.item.input_audio_transcription.delta", **base, "delta": event["delta"]})
        elif kind == wire.COMPLETED:
            self._answered(str(item_id))
            self._charge(float(event["seconds"]))
            extra = {"logprobs": event.get("logprobs") or []} if self.config.logprobs else {}
            self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    **base,
                    "transcript": event["transcript"],
                    **extra,
                    "usage": {"type": "duration", "seconds": event["seconds"]},
                }
            )
        elif kind == wire.FAILED:
            self._answered(str(item_id))
            self.send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    **base,
                    "error": {
                        "type": "server_error",
                        "code": event.get("code"),
                        "message": event.get("message"),
                        "param": None,
                    },
                }
            )
        elif kind == wire.ERROR:
            frame = event.get("frame")
            self.error(
                str(event.get("message")),
                str(event.get("code")),
                param=event.get("param"),
                event_id=self.append_ids.get(frame) if isinstance(frame, int) else event.get("event_id"),
            )

    def _charge(self, seconds: float) -> None:
        """An item's audio charged to the key; past its hour, the session ends once its items are answered."""

        async def charge() -> None:
            count = await self.tenancy.charge_audio(self.ws.scope, seconds)
            key = key_of(self.ws.scope)
            limit = key.limits.audio_seconds_per_hour if key else None
            if count is not None and limit is not None and count.used >= limit:
                wait = max(1, round(count.reset_seconds))
                self.over_quota = (
                    f"Rate limit reached for key '{key.name if key else ''}' on audio seconds per hour: "
                    f"Limit {limit:g}, Used {count.used:.1f}. Please try again in {wait}s."
                )

        task = asyncio.create_task(charge())
        self.charging.add(task)
        task.add_done_callback(self.charging.discard)

    def _committed(self, item_id: str) -> None:
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous, self.last_item = self.last_item, item_id
        self.pending.add(item_id)
        self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
        self.send({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        self.send({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
