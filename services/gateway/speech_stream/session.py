"""One speech stream session (vLLM-Omni's ``/v1/audio/speech/stream`` protocol): text pieces in, each
complete unit (``split_granularity``) spoken as soon as it is complete, in order, while more text
arrives. Two tasks: the receiver reads the client's messages (so ``session.close`` and a client that
leaves cancel the unit being spoken: the TTS predictor's work stops with it), and the speaker takes
units from a queue, one at a time, and sends ``audio.start``, the audio, ``audio.done``, and after an
``input.done`` the utterance's ``session.done``. One writer sends every frame, in order.

Bounded: a message (``MAX_MESSAGE`` chars, ``input.text`` ``MAX_TEXT_MESSAGE``), the text not yet
spoken (``GATEWAY_SPEECH_STREAM_MAX_BUFFER_CHARS``), a unit (the speech input limit), frames waiting
for the client (``OUTBOX_FRAMES``: then the speaker waits), the wait for the first config and the
idle time (not counted while speaking).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.asgi import WS_CLOSE_SECONDS
from services.common.errors import ServiceError, echo
from services.gateway.audio_encoding import AudioEncoder
from services.gateway.backends import Backend
from services.gateway.catalog import ModelCatalog
from services.gateway.errors import BadRequest
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings
from services.gateway.speech_stream.config import ConfigRefused, StreamConfig
from services.gateway.speech_stream.splitter import TextSplitter
from services.gateway.synthesis import encode, encode_step, open_stream, synthesize_samples
from services.gateway.tenants.tenancy import Tenancy
from services.gateway.word_timings import align_words

log = logging.getLogger(__name__)
MAX_MESSAGE = 4 << 20  # characters of any message
MAX_TEXT_MESSAGE = 128 << 10  # characters of an input.text message
MAX_UNIT_CHARS = 4096  # a unit is at most what one speech request takes
OUTBOX_FRAMES = 64


class Fatal(Exception):
    """An error that ends the session (before the first config, timeouts)."""


@dataclass(frozen=True)
class Unit:
    utterance: int
    index: int
    text: str
    config: StreamConfig


@dataclass(frozen=True)
class UtteranceEnd:
    utterance: int
    units: int


def speech_request(unit: Unit) -> SpeechRequest:
    cfg = unit.config
    try:
        return SpeechRequest(
            model=cfg.model, input=unit.text, voice=cfg.voice, response_format=cfg.response_format, speed=cfg.speed
        )
    except ValidationError as exc:
        raise BadRequest(f"the text or configuration cannot be spoken: {exc.errors()[0]['msg']}") from None


@dataclass
class Progress:
    """A unit's audio sent so far (PCM16 bytes at ``rate``)."""

    where: dict
    as_json: bool
    rate: int
    sent: int = 0
    chunk_id: int = 0
    started: bool = False  # audio.start went out
    kept: list[np.ndarray] = field(default_factory=list)  # the samples, for word timings

    def ms(self, pcm_bytes: int) -> int:
        return pcm_bytes // 2 * 1000 // self.rate

    def chunk(self, audio_b64: str, size: int) -> dict:
        return {
            "type": "audio.chunk",
            **self.where,
            "chunk_id": self.chunk_id,
            "chunk_start_ms": self.ms(self.sent),
            "chunk_end_ms": self.ms(self.sent + size),
            "sample_rate": self.rate,
            "channels": 1,
            "audio_b64": audio_b64,
        }


class SpeechStreamSession:
    def __init__(
        self,
        ws: WebSocket,
        settings: GatewaySettings,
        catalog: ModelCatalog,
        backends: tuple[Backend, Backend],
        tenancy: Tenancy,
    ) -> None:
        self.ws, self.settings, self.catalog, self.tenancy = ws, settings, catalog, tenancy
        self.tts, self.asr = backends
        self.config: StreamConfig | None = None
        self.splitter = TextSplitter("none", MAX_UNIT_CHARS)
        self.utterance = 0
        self.units_in_utterance = 0
        self.queued_chars = 0  # text in units waiting to be spoken
        self.work: asyncio.Queue[Unit | UtteranceEnd] = asyncio.Queue()
        self.outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(OUTBOX_FRAMES)
        self.speaking = False
        self.last_message = time.monotonic()

    # -- the session ------------------------------------------------------------------------------
    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        speaker: asyncio.Task | None = None
        close_code = 1000
        try:
            self._configure(await self._first_config())
            speaker = asyncio.create_task(self._speak())
            await self._receive(speaker)
        except Fatal as exc:
            self._error_soon(str(exc))
        except (WebSocketDisconnect, RuntimeError):
            close_code = 0  # the client is gone: nothing to close
        except Exception:
            log.exception("speech stream session failed")
            self._error_soon("Internal error in the speech stream session")
            close_code = 1011
        finally:
            if speaker is not None:
                speaker.cancel()  # session.close or a client that left: the unit being spoken stops
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await speaker
            with contextlib.suppress(asyncio.QueueFull):
                self.outbox.put_nowait(None)
            if close_code:  # what was sent before the close reaches the client first
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=5)
            writer.cancel()
            if close_code:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(close_code), WS_CLOSE_SECONDS)

    async def _first_config(self) -> StreamConfig:
        try:
            message = await asyncio.wait_for(self.ws.receive(), timeout=self.settings.speech_stream_config_seconds)
        except TimeoutError:
            raise Fatal("Timeout waiting for session.config") from None
        event = self._event(message, fatal=True)
        if event is None or event.get("type") != "session.config":
            kind = echo(event.get("type")) if event is not None else "?"
            raise Fatal(f"Expected session.config, got: {kind}")
        try:
            return await self._parse(event)
        except ConfigRefused as exc:
            raise Fatal(exc.message) from None

    async def _parse(self, event: dict) -> StreamConfig:
        config = StreamConfig.parse(event)
        if await self.catalog.knows("speech", config.model) is False:
            served = await self.catalog.ids("speech")
            raise ConfigRefused(
                f"Invalid session config: the model '{echo(config.model)}' does not exist or is not a speech "
                f"model; use one of {served}"
            )
        return config

    async def _receive(self, speaker: asyncio.Task) -> None:
        while True:
            if speaker.done():
                speaker.result()  # the speaker's Fatal (a client that does not read) ends the session
                return
            idle = time.monotonic() - self.last_message
            if not self.busy and idle > self.settings.speech_stream_idle_seconds:
                raise Fatal("Idle timeout: no message received")
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=1.0)
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            self.last_message = time.monotonic()
            event = self._event(message, fatal=False)
            if event is not None and not await self._handle(event):
                return  # session.close

    @property
    def busy(self) -> bool:
        return self.speaking or not self.work.empty()

    def _event(self, message: Mapping[str, Any], *, fatal: bool) -> dict | None:
        """The message as a JSON object, or None after an error event (raised as Fatal when ``fatal``)."""
        text = message.get("text")
        problem = None
        if text is None:
            problem = "WebSocket messages must be JSON text; binary frames are not accepted"
        elif len(text) > MAX_MESSAGE:
            problem = "WebSocket message too large"
        else:
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                problem = "Invalid JSON message"
            else:
                if isinstance(event, dict):
                    return event
                problem = "WebSocket messages must be JSON objects"
        if fatal:
            raise Fatal(problem)
        self._error_soon(problem)
        return None

    async def _handle(self, event: dict) -> bool:
        kind = event.get("type")
        if kind == "input.text":
            self._text(event)
        elif kind == "input.done":
            self._enqueue(self.splitter.flush())
            self.work.put_nowait(UtteranceEnd(self.utterance, self.units_in_utterance))
            self.utterance += 1
            self.units_in_utterance = 0
        elif kind == "session.config":
            await self._reconfigure(event)
        elif kind == "session.close":
            return False
        else:
            self._error_soon(f"Unknown message type: {echo(kind)}")
        return True

    def _text(self, event: dict) -> None:
        text = event.get("text")
        if not isinstance(text, str):
            self._error_soon("input.text requires a string value")
            return
        if len(text) > MAX_TEXT_MESSAGE:
            self._error_soon("input.text message too large")
            return
        limit = self.settings.speech_stream_max_buffer_chars
        if len(self.splitter.pending) + self.queued_chars + len(text) > limit:
            self._error_soon(f"buffered speech text exceeds {limit} characters; this input.text was dropped")
            return
        self._enqueue(self.splitter.feed(text))

    async def _reconfigure(self, event: dict) -> None:
        if self.splitter.pending.strip() or self.units_in_utterance:
            self._error_soon(
                "session.config cannot be applied while an utterance is in progress; send input.done first"
            )
            return
        try:
            config = await self._parse(event)
        except ConfigRefused as exc:
            self._error_soon(exc.message)
            return
        self._configure(config)

    def _configure(self, config: StreamConfig) -> None:
        self.config = config
        self.splitter = TextSplitter(config.split_granularity, MAX_UNIT_CHARS)

    def _enqueue(self, texts: list[str]) -> None:
        assert self.config is not None  # noqa: S101 - configured before any text is read
        for text in texts:
            self.work.put_nowait(Unit(self.utterance, self.units_in_utterance, text, self.config))
            self.units_in_utterance += 1
            self.queued_chars += len(text)

    # -- speaking ---------------------------------------------------------------------------------
    async def _speak(self) -> None:
        while True:
            item = await self.work.get()
            self.speaking = True
            try:
                if isinstance(item, UtteranceEnd):
                    await self.send(
                        {"type": "session.done", "utterance_index": item.utterance, "total_sentences": item.units}
                    )
                else:
                    self.queued_chars -= len(item.text)
                    await self._unit(item)
            finally:
                self.speaking = False
                self.last_message = max(self.last_message, time.monotonic())  # idle counts from here

    async def _unit(self, unit: Unit) -> None:
        """``audio.start``, the audio, ``audio.done``; a failure is ``audio.start``, ``error``,
        ``audio.done`` with ``error: true`` (and ``partial_audio`` when some audio went out)."""
        cfg, rate = unit.config, self.settings.speech_sample_rate
        out = Progress({"utterance_index": unit.utterance, "sentence_index": unit.index}, cfg.word_timestamps, rate)
        start = {"type": "audio.start", **out.where, "sentence_text": unit.text, "format": cfg.response_format}
        try:
            req = speech_request(unit)
            await self.tenancy.characters(self.ws.scope, len(unit.text))  # the key's hour of characters
            if cfg.stream_audio:
                await self._streamed(unit, req, start, out)
            else:
                made = await synthesize_samples(self.tts, req, cfg.language)
                data = await encode(cfg.response_format, made.samples, made.rate, rate)
                await self._start(out, start | {"sample_rate": rate, "channels": 1})
                await self.send(data)
                out.sent += len(data)
        except ServiceError as exc:
            if not out.started:
                await self._start(out, start)
            failure = {"partial_audio": True, "action": "discard"} if out.sent else {}
            detail = f"Generation failed for utterance {unit.utterance}, sentence {unit.index}: {exc.message}"
            await self.send({"type": "error", "message": detail, "code": exc.code, **failure})
            await self.send({"type": "audio.done", **out.where, "total_bytes": out.sent, "error": True})
            return
        await self.send({"type": "audio.done", **out.where, "total_bytes": out.sent, "error": False})

    async def _start(self, out: Progress, start: dict) -> None:
        await self.send(start)
        out.started = True

    async def _streamed(self, unit: Unit, req: SpeechRequest, start: dict, out: Progress) -> None:
        """PCM16 as the TTS predictor makes it: binary frames, or with word timings ``audio.chunk``
        JSON frames, the last of them carrying the unit's word timings (ms from the unit's start)."""
        cfg = unit.config
        pcm = await open_stream(self.tts, req, cfg.language)
        timed = {"word_timestamps": True} if cfg.word_timestamps else {}
        await self._start(out, start | {"sample_rate": out.rate, "channels": 1} | timed)
        encoder = AudioEncoder("pcm", pcm.rate, out.rate, streaming=True)
        async for samples in pcm.chunks():
            if cfg.word_timestamps:
                out.kept.append(samples)
            await self._audio(out, await encode_step("pcm", encoder.feed, samples))
        await self._audio(out, await encode_step("pcm", encoder.finish))
        if cfg.word_timestamps:
            await self.send(await self._timings(unit, out, pcm.rate, pcm.language))

    async def _audio(self, out: Progress, data: bytes) -> None:
        if not data:
            return
        if out.as_json:
            await self.send(out.chunk(base64.b64encode(data).decode(), len(data)) | {"timestamps": None})
        else:
            await self.send(data)
        out.sent += len(data)
        out.chunk_id += 1

    async def _timings(self, unit: Unit, out: Progress, rate: int, language: str) -> dict:
        """The unit's last ``audio.chunk``: no audio, its words' times; ``timestamps: null`` and the
        reason when they could not be measured (never invented ones)."""
        samples = np.concatenate(out.kept) if out.kept else np.zeros(0, np.float32)
        duration_ms = out.ms(out.sent)
        final = out.chunk("", 0) | {"chunk_start_ms": 0, "chunk_end_ms": duration_ms}
        try:
            words = await align_words(
                self.asr,
                samples,
                rate,
                unit.text,
                unit.config.language or language or "en",
                model=self.settings.word_timings_model,
            )
        except ServiceError as exc:
            return final | {"timestamps": None, "timestamps_error": exc.message}
        timestamps = [
            {
                "word": w["word"],
                "start_ms": min(round(w["start"] * 1000), duration_ms),
                "end_ms": min(round(w["end"] * 1000), duration_ms),
            }
            for w in words
        ]
        return final | {"timestamps": timestamps}

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, frame: dict | bytes) -> None:
        """Queued for the writer; a client that reads nothing for the idle time ends the session."""
        try:
            await asyncio.wait_for(
                self.outbox.put(frame if isinstance(frame, bytes) else json.dumps(frame)),
                timeout=self.settings.speech_stream_idle_seconds,
            )
        except TimeoutError:
            raise Fatal("Client not reading: audio waited longer than the idle timeout") from None

    def _error_soon(self, message: str) -> None:
        """An error event from the receiver, which must not wait on a full outbox."""
        with contextlib.suppress(asyncio.QueueFull):
            self.outbox.put_nowait(json.dumps({"type": "error", "message": message}))

    async def _write(self) -> None:
        while (frame := await self.outbox.get()) is not None:
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
