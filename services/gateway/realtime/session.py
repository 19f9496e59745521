"""One Realtime transcription session: client events in, server events out.

Audio appended by the client is converted to 16 kHz as it arrives and kept until it is committed:
by the client (``input_audio_buffer.commit``) or, with server VAD, when a turn ends (the ASR
predictor scores 32 ms frames with Silero). Each committed item is transcribed on the ASR
predictor's streaming route in its own task, so items overlap and their events carry ``item_id``.
A bad event is an ``error`` event and the session goes on; a backend failure on an item is that
item's ``...failed`` event. Every event the server sends passes one writer task (one at a time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import secrets
import time
import wave
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.errors import ServiceError, echo
from services.common.logs import REQUEST_ID
from services.gateway.backends import Backend, Blob, new_request, request_body
from services.gateway.catalog import ModelCatalog
from services.gateway.realtime.audio_in import BadAudioChunk, InputAudio
from services.gateway.realtime.config import ConfigError, SessionConfig, expires
from services.gateway.realtime.turns import FRAME, RATE, Started, TurnDetector, ms
from services.gateway.settings import GatewaySettings
from services.gateway.transcription import asr_events

log = logging.getLogger(__name__)
MIN_COMMIT_SAMPLES = RATE // 10  # 100 ms, as OpenAI
TAIL_SAMPLES = RATE // 10  # audio kept after the last speech frame of a VAD turn
MAX_VAD_FRAMES = 30 * RATE // FRAME


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return out.getvalue()


class SessionClosed(Exception):
    def __init__(self, code: int, reason: str, error: tuple[str, str] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.error = code, reason, error


class RealtimeSession:
    def __init__(
        self,
        ws: WebSocket,
        settings: GatewaySettings,
        asr: Backend,
        catalog: ModelCatalog,
        *,
        draining: Callable[[], bool],
        model: str | None,
    ) -> None:
        self.ws, self.settings, self.asr, self.catalog = ws, settings, asr, catalog
        self.draining = draining  # () -> bool
        self.id = new_id("sess")
        self.config = SessionConfig(model=model or SessionConfig.model)
        self.started = time.monotonic()
        self.expires_at = expires(settings.realtime_max_session_seconds)
        self.outbox: asyncio.Queue[dict | None] = asyncio.Queue()
        self.items: set[asyncio.Task] = set()
        self.input = InputAudio(self.config.format)
        self.buffer = np.zeros(0, np.float32)  # uncommitted 16 kHz audio
        self.buffer_start = 0  # absolute 16 kHz index of buffer[0]
        self.vad_done = 0  # absolute index up to which the VAD has scored frames
        self.vad_task: asyncio.Task | None = None
        self.detector = TurnDetector(self.config.turn_detection) if self.config.turn_detection else None
        self.generation = 0  # bumped by commit and clear: a VAD answer for older audio is dropped
        self.speech_item: str | None = None
        self.last_item: str | None = None

    @property
    def end(self) -> int:
        return self.buffer_start + self.buffer.size

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self) -> None:
        REQUEST_ID.set(self.id)  # the session's calls (VAD) carry its id; its items carry <session>/<item>
        writer = asyncio.create_task(self._writer())
        self.send({"type": "session.created", "session": self.config.render_ga(self.id, self.expires_at)})
        last_event = time.monotonic()
        closing: SessionClosed | None = None
        try:
            while True:
                if (reason := self._reason_to_close(last_event)) is not None:
                    raise reason
                try:
                    message = await asyncio.wait_for(self.ws.receive(), timeout=1.0)
                except TimeoutError:
                    continue
                if message["type"] == "websocket.disconnect":
                    break
                last_event = time.monotonic()
                await self.handle(message)
        except SessionClosed as exc:
            closing = exc
        except WebSocketDisconnect:
            pass
        finally:
            await self._finish(closing, writer)

    def _reason_to_close(self, last_event: float) -> SessionClosed | None:
        now, settings = time.monotonic(), self.settings
        if self.draining():
            return SessionClosed(
                1001, "server shutting down", ("server_shutting_down", "The server is restarting; reconnect.")
            )
        if now - self.started > settings.realtime_max_session_seconds:
            limit = settings.realtime_max_session_seconds
            return SessionClosed(
                1000,
                "session expired",
                ("session_expired", f"The session reached its maximum duration of {limit:.0f} s."),
            )
        if now - last_event > settings.realtime_idle_seconds:
            idle = settings.realtime_idle_seconds
            return SessionClosed(1000, "idle", ("session_idle", f"No event for {idle:.0f} s."))
        return None

    async def _finish(self, closing: SessionClosed | None, writer: asyncio.Task) -> None:
        if self.vad_task is not None:
            self.vad_task.cancel()
        if closing is not None and self.items:  # a clean close: the items committed so far are answered
            await asyncio.wait(self.items, timeout=self.settings.shutdown_grace_seconds)
        for task in self.items:  # the client left: its work is cancelled
            task.cancel()
        if closing is not None and closing.error is not None:
            self.error(closing.error[1], closing.error[0], type_="invalid_request_error")
        self.outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await writer
        if closing is not None:
            with contextlib.suppress(Exception):
                await self.ws.close(closing.code, closing.reason)
        log.info("realtime session %s ended (%s)", self.id, closing.reason if closing else "client closed")

    async def _writer(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                await self.ws.send_text(json.dumps(event))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    def send(self, event: dict) -> None:
        self.outbox.put_nowait({"event_id": new_id("event"), **event})

    def error(
        self,
        message: str,
        code: str,
        *,
        param: str | None = None,
        event_id: Any = None,
        type_: str = "invalid_request_error",
    ) -> None:
        self.send(
            {
                "type": "error",
                "error": {"type": type_, "code": code, "message": message, "param": param, "event_id": event_id},
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
        except ValueError:
            self.error("The event is not valid JSON.", "invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.error("An event is a JSON object with a string 'type'.", "invalid_event", param="type")
            return
        event_id = event.get("event_id")
        kind = event["type"]
        try:
            if kind == "session.update":
                await self.update(event.get("session"), beta=False)
            elif kind == "transcription_session.update":
                await self.update(event.get("session"), beta=True)
            elif kind == "input_audio_buffer.append":
                self.append(event.get("audio"))
            elif kind == "input_audio_buffer.commit":
                self.commit()
            elif kind == "input_audio_buffer.clear":
                self.clear()
                self.send({"type": "input_audio_buffer.cleared"})
            else:
                self.error(
                    f"Invalid value: '{echo(kind)}'. A transcription session takes session.update, "
                    "transcription_session.update and input_audio_buffer.append, .commit and .clear.",
                    "invalid_value",
                    param="type",
                    event_id=event_id,
                )
        except ConfigError as exc:
            self.error(exc.message, "invalid_value", param=exc.param, event_id=event_id)
        except ClientEventError as exc:
            self.error(exc.message, exc.code, param=exc.param, event_id=event_id)

    async def update(self, session: Any, *, beta: bool) -> None:
        config = self.config.update_beta(session) if beta else self.config.update_ga(session)
        if config.model != self.config.model and await self.catalog.knows("transcription", config.model) is False:
            served = await self.catalog.ids("transcription")
            raise ConfigError(
                f"The model '{echo(config.model)}' does not exist or is not a transcription model; use one of {served}",
                "session.audio.input.transcription.model",
            )
        if config.format != self.config.format:
            self.input = InputAudio(config.format)
        if config.turn_detection != self.config.turn_detection:
            self.detector = TurnDetector(config.turn_detection) if config.turn_detection else None
            self.speech_item = None
        self.config = config
        if beta:
            self.send(
                {"type": "transcription_session.updated", "session": config.render_beta(self.id, self.expires_at)}
            )
        else:
            self.send({"type": "session.updated", "session": config.render_ga(self.id, self.expires_at)})
        self._kick_vad()

    def append(self, audio: Any) -> None:
        if not isinstance(audio, str):
            raise ClientEventError(
                "input_audio_buffer.append needs 'audio': base64-encoded audio", "invalid_value", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
            samples = self.input.convert(data)
        except (binascii.Error, ValueError) as exc:
            message = str(exc) if isinstance(exc, BadAudioChunk) else "'audio' is not valid base64"
            raise ClientEventError(message, "invalid_value", "audio") from None
        cap = int(self.settings.realtime_max_buffer_seconds * RATE)
        if self.buffer.size + samples.size > cap:
            if self.detector is not None and self.detector.in_speech:
                self._end_turn(self.detector.start, self.end)  # a turn as long as the buffer: cut it here
                self.detector.reset()
            else:
                raise ClientEventError(
                    f"The input audio buffer is full ({self.settings.realtime_max_buffer_seconds:g}"
                    " s of audio): commit or clear it.",
                    "input_audio_buffer_full",
                    "audio",
                )
        self.buffer = np.concatenate([self.buffer, samples])
        self._kick_vad()

    def commit(self) -> None:
        if self.buffer.size < MIN_COMMIT_SAMPLES:
            raise ClientEventError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but "
                f"buffer only has {ms(self.buffer.size):.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
                None,
            )
        item_id = self.speech_item or new_id("item")
        self._commit(item_id, self.buffer)
        self.clear()

    def clear(self) -> None:
        self._drop_before(self.end)
        self.generation += 1
        self.speech_item = None
        if self.detector is not None:
            self.detector.reset()

    # -- turns ------------------------------------------------------------------------------------
    def _kick_vad(self) -> None:
        if self.detector is not None and self.vad_task is None and self.end - self.vad_done >= FRAME:
            self.vad_task = asyncio.create_task(self._vad())

    async def _vad(self) -> None:
        try:
            while self.detector is not None and (frames := (self.end - self.vad_done) // FRAME):
                frames = min(frames, MAX_VAD_FRAMES)
                start, generation = self.vad_done, self.generation
                context = FRAME if start - FRAME >= self.buffer_start else 0
                begin = start - context - self.buffer_start
                chunk = self.buffer[begin : begin + context + frames * FRAME]
                probabilities = await self._score(chunk)
                if generation != self.generation or self.detector is None:
                    continue
                self.vad_done = start + frames * FRAME
                for turn in self.detector.feed(start // FRAME, probabilities[context // FRAME :]):
                    if isinstance(turn, Started):
                        self.speech_item = new_id("item")
                        self.send(
                            {
                                "type": "input_audio_buffer.speech_started",
                                "item_id": self.speech_item,
                                "audio_start_ms": ms(turn.sample),
                            }
                        )
                    else:  # (one batch of frames may end a turn and start the next)
                        self._end_turn(turn.start, turn.sample)
                if not self.detector.in_speech:  # nothing to keep but the prefix padding (and a context frame)
                    self._drop_before(self.vad_done - self.detector.vad.prefix_padding_ms * RATE // 1000 - FRAME)
        except ServiceError as exc:
            log.warning("realtime session %s: VAD failed: %s", self.id, exc.message)
            self.error(f"Turn detection failed: {exc.message}", exc.code or "vad_failed", type_="server_error")
        finally:
            self.vad_task = None

    async def _score(self, chunk: np.ndarray) -> list[float]:
        payload, headers = request_body(new_request({}), [Blob.of("audio", [chunk.astype("<f4").tobytes()])])
        doc = await self.asr.json("POST", "/vad", payload, headers)
        try:
            return [float(p) for p in doc["probabilities"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self.asr.malformed(exc) from exc

    def _end_turn(self, start: int, end: int) -> None:
        item_id = self.speech_item or new_id("item")
        self.send({"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": ms(end)})
        stop = min(self.end, end + TAIL_SAMPLES)
        audio = self.buffer[max(0, start - self.buffer_start) : max(0, stop - self.buffer_start)]
        self.speech_item = None
        if audio.size >= MIN_COMMIT_SAMPLES:
            self._commit(item_id, audio)
        self._drop_before(stop)

    def _drop_before(self, sample: int) -> None:
        cut = min(max(0, sample - self.buffer_start), self.buffer.size)
        if cut:
            self.buffer, self.buffer_start = self.buffer[cut:], self.buffer_start + cut
        self.vad_done = max(self.vad_done, -(-self.buffer_start // FRAME) * FRAME)  # frames still held whole

    # -- items ------------------------------------------------------------------------------------
    def _commit(self, item_id: str, audio: np.ndarray) -> None:
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.last_item
        self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
        self.send({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        self.send({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
        self.last_item = item_id
        task = asyncio.create_task(self._transcribe(item_id, audio.copy(), self.config))
        self.items.add(task)
        task.add_done_callback(self.items.discard)

    async def _transcribe(self, item_id: str, audio: np.ndarray, config: SessionConfig) -> None:
        REQUEST_ID.set(f"{self.id}/{item_id}")
        params = {
            "model": config.model,
            "task": "transcribe",
            "language": config.language,
            "prompt": config.prompt,
            "temperature": 0.0,
            "logprobs": config.logprobs,
        }
        base = {"item_id": item_id, "content_index": 0}
        try:
            response = await self.asr.open_stream(new_request(params), [Blob.of("audio", [wav_bytes(audio)])])
            started = False
            async for event in asr_events(response):
                if event["type"] == "text":
                    delta = event["text"] if started else event["text"].lstrip()
                    started = started or bool(delta)
                    if delta:
                        extra = {"logprobs": event["logprobs"]} if config.logprobs and "logprobs" in event else {}
                        self.send(
                            {
                                "type": "conversation.item.input_audio_transcription.delta",
                                **base,
                                "delta": delta,
                                **extra,
                            }
                        )
                elif event["type"] == "result":
                    result = event["result"]
                    extra = {"logprobs": result.get("logprobs") or []} if config.logprobs else {}
                    self.send(
                        {
                            "type": "conversation.item.input_audio_transcription.completed",
                            **base,
                            "transcript": result["text"],
                            **extra,
                            "usage": {"type": "duration", "seconds": round(audio.size / RATE, 3)},
                        }
                    )
                    return
                else:
                    raise ItemFailed(f"ASR backend failed: {event.get('message')}", event.get("code"))
            raise ItemFailed("ASR backend stream ended without a result", "backend_stream_failed")
        except ServiceError as exc:
            self._failed(base, exc.message, exc.code, exc.type)
        except ItemFailed as exc:
            self._failed(base, exc.message, exc.code, "server_error")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("realtime item %s: ASR stream broke off: %s: %s", item_id, type(exc).__name__, exc)
            self._failed(base, "ASR backend stream broke off", "backend_stream_failed", "server_error")

    def _failed(self, base: dict, message: str, code: str | None, type_: str) -> None:
        self.send(
            {
                "type": "conversation.item.input_audio_transcription.failed",
                **base,
                "error": {"type": type_, "code": code, "message": message, "param": None},
            }
        )


class ClientEventError(Exception):
    def __init__(self, message: str, code: str, param: str | None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class ItemFailed(Exception):
    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.message, self.code = message, code
