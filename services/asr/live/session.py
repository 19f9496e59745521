"""One live transcription session on the ASR predictor (``services.asr.live``): audio in, events out.

Turns: with server VAD, Silero scores each 32 ms frame and the ``TurnDetector`` opens and ends turns;
with client commits, the audio buffered since the last commit is the open turn. While a turn is open
its audio is decoded again each time ``delay`` seconds more of it arrived (at most one decode in
flight: a client sending faster than real time gets fewer partials, never a queue of them; without a
configured language, from 3 s of the turn on, the language detected then kept for it) and the
words two consecutive decodes agree on go out as deltas (``LocalAgreement``). When the turn ends it
becomes an item: one final decode of its audio (Whisper's usual decoding), whose words after the
sent ones are the item's last delta; the transcript is the deltas joined. Items may decode at once,
but their final events leave in the order they were committed.

Bounded: the audio held (``max_buffer_seconds``; a turn that long is cut there, or without VAD the
append is refused), the items decoding at once (``max_items``; beyond, an item fails at once), one
partial decode per session. CPU work (resampling, VAD, decoding) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.asr.live.agreement import LocalAgreement, joined
from services.asr.live.audio_in import BadAudioChunk, InputAudio
from services.asr.live.buffer import AudioBuffer
from services.asr.live.turns import Started, TurnDetector
from services.asr.text_translation import UnsupportedLanguage
from services.asr.vad import FRAME
from services.common import live_wire as wire
from services.common.live_wire import RATE, Vad
from services.common.work import Cancelled

log = logging.getLogger(__name__)
WINDOW = 30 * RATE  # Whisper's window: a longer open turn is ended there (its text stays exact)
MIN_PARTIAL = RATE // 2  # audio a turn needs before its first partial decode
LANGUAGE_AUDIO = 3 * RATE  # a detected language is kept for the turn once detected on this much audio
MAX_VAD_FRAMES = 30 * RATE // FRAME  # frames scored per call


class LiveError(Exception):
    """A control message the session refuses (an OpenAI ``error`` event for the client)."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclass(frozen=True)
class LiveConfig:
    format: str = "audio/pcm"
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    logprobs: bool = False
    turn_detection: Vad | None = field(default_factory=Vad)
    delay: str = "low"
    translate_to: str | None = None  # a translation session's output language: each item is translated too
    transcript: bool = True  # false: nobody reads the source text (into English: one translate decode only)

    @classmethod
    def from_wire(cls, message: dict[str, Any]) -> LiveConfig:
        try:
            config = cls(
                format=str(message.get("format", cls.format)),
                model=str(message.get("model", cls.model)),
                language=message.get("language"),
                prompt=message.get("prompt"),
                logprobs=bool(message.get("logprobs", False)),
                turn_detection=Vad.from_wire(message.get("turn_detection")),
                delay=str(message.get("delay", cls.delay)),
                translate_to=message.get("translate_to"),
                transcript=bool(message.get("transcript", True)),
            )
        except (TypeError, ValueError) as exc:
            raise LiveError("malformed session configuration", "invalid_value", "session") from exc
        if config.format not in wire.INPUT_RATES or config.delay not in wire.DELAYS:
            raise LiveError("unknown input format or delay", "invalid_value", "session")
        target = config.translate_to
        if target is not None and not (isinstance(target, str) and wire.LANGUAGE_CODE.fullmatch(target)):
            raise LiveError("translate_to must be a language code", "invalid_value", "session")
        return config


@dataclass(frozen=True)
class Decoded:
    text: str
    language: str
    logprobs: list[dict] | None = None


class Decode(Protocol):
    def __call__(
        self,
        audio: np.ndarray,
        config: LiveConfig,
        *,
        final: bool,
        language: str | None,
        cancel: threading.Event,
        task: str = "transcribe",
    ) -> Decoded: ...


class Translator(Protocol):
    """Text translation into languages other than English (``services.asr.text_translation``)."""

    def languages(self) -> frozenset[str]: ...

    def translate(self, text: str, source: str, target: str, cancel: threading.Event) -> str: ...


@dataclass(eq=False)
class Turn:
    item_id: str
    start: int  # absolute 16 kHz index
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    language: str | None = None
    decoded_to: int = 0  # the end of the audio its last partial decode covered
    partial: asyncio.Task | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class Item:
    item_id: str
    seconds: float
    task: asyncio.Task


def new_item_id() -> str:
    return f"item_{secrets.token_hex(10)}"


def completed(turn: Turn, audio: np.ndarray, language: str, transcript: str, **fields: Any) -> dict:
    """An item's completed event: its transcript, the language heard, its length, and ``fields``."""
    return {
        "type": wire.COMPLETED,
        "item_id": turn.item_id,
        "transcript": transcript,
        "language": language,
        "seconds": round(audio.size / RATE, 3),
        **fields,
    }


class LiveSession:
    def __init__(
        self,
        config: LiveConfig,
        decode: Decode,
        score: Callable[[np.ndarray], list[float]],
        emit: Callable[[dict], Awaitable[None]],
        *,
        max_buffer_seconds: float = 300.0,
        max_items: int = 4,
        translator: Translator | None = None,
    ) -> None:
        self.config, self.decode, self.score, self.emit = config, decode, score, emit
        self.translator = translator
        self.max_buffer = int(max_buffer_seconds * RATE)
        self.max_items = max_items
        self.input = InputAudio(config.format)
        self.buffer = AudioBuffer()
        self.detector = TurnDetector(config.turn_detection) if config.turn_detection else None
        self.vad_done = 0  # absolute index up to which frames were scored
        self.heard = 0  # absolute index where the last speech (or the last idle commit) ended
        self.turn: Turn | None = None
        self.items: deque[Item] = deque()
        self._releasing: asyncio.Task | None = None
        self.closed = False

    # -- control -----------------------------------------------------------------------------------
    async def configure(self, config: LiveConfig) -> None:
        target = config.translate_to
        if target not in (None, "en", self.config.translate_to):
            await self._check_target(str(target))
        if config.format != self.config.format:
            self.input = InputAudio(config.format)
        if config.turn_detection != self.config.turn_detection:
            self.detector = TurnDetector(config.turn_detection) if config.turn_detection else None
            self._abandon_turn()
        self.config = config

    async def _check_target(self, target: str) -> None:
        """A target other than English needs the text translation model to know it."""
        param = "session.audio.output.language"
        if self.translator is None:
            raise LiveError(f"this server translates into English only, not '{target}'", "unsupported_language", param)
        try:
            known = await asyncio.to_thread(self.translator.languages)
        except Exception as exc:  # noqa: BLE001 - the model could not load: named, logged
            log.warning("text translation model failed to load: %s: %s", type(exc).__name__, exc)
            raise LiveError("the text translation model is unavailable", "backend_failed", param) from None
        if target not in known:
            raise LiveError(f"the translation model cannot translate into '{target}'", "unsupported_language", param)

    async def commit(self) -> None:
        start = self.turn.start if self.turn else max(self.buffer.start, self.heard)
        if self.buffer.end - start < wire.MIN_COMMIT_MS * RATE // 1000:
            held = (self.buffer.end - start) * 1000 / RATE
            raise LiveError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but "
                f"buffer only has {max(0.0, held):.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        turn = self.turn or self._open(start)
        await self._end_turn(turn, self.buffer.end)

    async def clear(self) -> None:
        self._abandon_turn()
        self.buffer.drop_before(self.buffer.end)
        self.heard = self.vad_done = max(self.vad_done, self.buffer.end)
        if self.detector is not None:
            self.detector.reset()
        await self.emit({"type": wire.CLEARED})

    # -- audio -------------------------------------------------------------------------------------
    async def audio(self, data: bytes) -> None:
        try:
            samples = await asyncio.to_thread(self.input.convert, data)
        except BadAudioChunk as exc:
            raise LiveError(str(exc), "invalid_value", "audio") from None
        if self.buffer.held + samples.size > self.max_buffer:
            if self.turn is not None and self.detector is not None:
                await self._cut(self.turn, self.buffer.end)  # a turn as long as the buffer: cut it here
            else:
                seconds = self.max_buffer / RATE
                raise LiveError(
                    f"The input audio buffer is full ({seconds:g} s of audio): commit or clear it.",
                    "input_audio_buffer_full",
                    "audio",
                )
        self.buffer.append(samples)
        if self.detector is not None:
            await self._detect()
        elif self.turn is None and self.buffer.end > max(self.buffer.start, self.heard):
            self._open(max(self.buffer.start, self.heard))
        await self._maybe_decode()

    async def _detect(self) -> None:
        assert self.detector is not None  # noqa: S101 - only called with server VAD
        while (frames := min((self.buffer.end - self.vad_done) // FRAME, MAX_VAD_FRAMES)) > 0:
            start = self.vad_done
            context = FRAME if start - FRAME >= self.buffer.start else 0
            chunk = self.buffer.span(start - context, start + frames * FRAME)
            probabilities = await asyncio.to_thread(self.score, chunk)
            self.vad_done = start + frames * FRAME
            for event in self.detector.feed(start // FRAME, probabilities[context // FRAME :]):
                if isinstance(event, Started):
                    turn = self._open(event.sample)
                    await self.emit(
                        {"type": wire.SPEECH_STARTED, "item_id": turn.item_id, "audio_start_ms": wire.ms(turn.start)}
                    )
                elif self.turn is not None:  # (one batch of frames may end a turn and start the next)
                    await self._end_turn(self.turn, event.sample, stopped=True)
        await self._idle_check()
        if not self.detector.in_speech and self.turn is None:  # keep only the prefix padding
            keep = self.vad_done - self.detector.vad.prefix_padding_ms * RATE // 1000 - FRAME
            self.buffer.drop_before(max(keep, 0))

    async def _idle_check(self) -> None:
        """OpenAI's ``idle_timeout_ms``: nobody has spoken for that long, so what was heard is committed."""
        assert self.detector is not None  # noqa: S101
        idle = self.detector.vad.idle_timeout_ms
        if idle is None or self.detector.in_speech or self.turn is not None:
            return
        if self.vad_done - self.heard >= idle * RATE // 1000:
            item_id, end = new_item_id(), self.heard + idle * RATE // 1000
            await self.emit(
                {
                    "type": wire.TIMEOUT,
                    "item_id": item_id,
                    "audio_start_ms": wire.ms(self.heard),
                    "audio_end_ms": wire.ms(end),
                }
            )  # the item is the (silent) audio still held: the prefix padding
            await self._end_turn(Turn(item_id, max(self.heard, self.buffer.start)), end)

    # -- turns and items ---------------------------------------------------------------------------
    def _open(self, start: int) -> Turn:
        self.turn = Turn(new_item_id(), max(start, self.buffer.start, self.heard))  # turns never overlap
        return self.turn

    def _abandon_turn(self) -> None:
        if self.turn is not None:
            self._stop_partial(self.turn)
            self.turn = None

    @staticmethod
    def _stop_partial(turn: Turn) -> None:
        turn.cancel.set()
        if turn.partial is not None:
            turn.partial.cancel()

    async def _end_turn(self, turn: Turn, end: int, *, stopped: bool = False) -> None:
        """The turn becomes an item: committed now, decoded once more, its final events in order."""
        self._stop_partial(turn)
        if self.turn is turn:
            self.turn = None
        self.heard = max(self.heard, end)
        if stopped:
            await self.emit({"type": wire.SPEECH_STOPPED, "item_id": turn.item_id, "audio_end_ms": wire.ms(end)})
        audio = self.buffer.span(turn.start, end)
        await self.emit({"type": wire.COMMITTED, "item_id": turn.item_id})
        if len(self.items) >= self.max_items:
            failed = {
                "type": wire.FAILED,
                "item_id": turn.item_id,
                "code": "too_many_items",
                "message": f"{self.max_items} items are still being transcribed; this one was dropped",
            }
            self.items.append(Item(turn.item_id, 0.0, asyncio.create_task(_value(failed))))
        else:
            task = asyncio.create_task(self._final(turn, audio))
            self.items.append(Item(turn.item_id, audio.size / RATE, task))
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.create_task(self._release())

    async def _final(self, turn: Turn, audio: np.ndarray) -> dict:
        cancel, started = threading.Event(), time.perf_counter()
        english_only = self.config.translate_to == "en" and not self.config.transcript
        try:
            decoded = await asyncio.to_thread(
                self.decode,
                audio,
                self.config,
                final=True,
                language=turn.language,
                cancel=cancel,
                task="translate" if english_only else "transcribe",
            )
        except asyncio.CancelledError:
            cancel.set()
            raise
        except Cancelled:
            return {"type": wire.FAILED, "item_id": turn.item_id, "code": "cancelled", "message": "session closed"}
        except Exception as exc:  # noqa: BLE001 - becomes the item's failed event
            log.warning("live item %s: final decode failed: %s: %s", turn.item_id, type(exc).__name__, exc)
            return {
                "type": wire.FAILED,
                "item_id": turn.item_id,
                "code": "backend_failed",
                "message": "ASR backend failed while transcribing",
            }
        if english_only:  # the one decode is the translation; no source text was asked for
            return completed(
                turn,
                audio,
                decoded.language,
                "",
                logprobs=None,
                translation={"text": decoded.text, "language": "en"},
                timings={"translate": round(time.perf_counter() - started, 3)},
            )
        rest = turn.agreement.finish(decoded.text)
        transcript = " ".join([*turn.agreement.sent, *rest])
        translated: dict[str, Any] = {}
        if self.config.translate_to:
            decoded_at = time.perf_counter()
            translated = await self._translated(turn, audio, decoded, cancel)
            translated["timings"] = {
                "transcribe": round(decoded_at - started, 3),
                "translate": round(time.perf_counter() - decoded_at, 3),
            }
        return completed(
            turn,
            audio,
            decoded.language,
            transcript,
            rest=joined(rest, first=not turn.agreement.sent),
            logprobs=decoded.logprobs,
            **translated,
        )

    async def _translated(self, turn: Turn, audio: np.ndarray, decoded: Decoded, cancel: threading.Event) -> dict:
        """The item in the session's output language: into English, Whisper's translate task on its audio
        (its transcript when it was English already); into another language, its transcript translated
        by the text translation model. A failure is the item's ``translation_error``, never its transcript's."""
        target, source = str(self.config.translate_to), decoded.language
        try:
            if source == target or not decoded.text:
                text = decoded.text
            elif target == "en":
                english = await asyncio.to_thread(
                    self.decode, audio, self.config, final=True, language=source, cancel=cancel, task="translate"
                )
                text = english.text
            elif self.translator is None:
                raise UnsupportedLanguage(target)
            else:
                text = await asyncio.to_thread(self.translator.translate, decoded.text, source, target, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise
        except UnsupportedLanguage as exc:
            return {"translation_error": {"code": "unsupported_language", "message": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - the item keeps its transcript
            log.warning("live item %s: translation failed: %s: %s", turn.item_id, type(exc).__name__, exc)
            return {"translation_error": {"code": "backend_failed", "message": "ASR backend failed while translating"}}
        return {"translation": {"text": text, "language": target}}

    async def _release(self) -> None:
        """Final events in commit order: the last delta of an item, then its completed (or failed)."""
        while self.items:
            result = await self.items[0].task
            self.items.popleft()
            rest = result.pop("rest", "")
            if rest:
                await self.emit({"type": wire.DELTA, "item_id": result["item_id"], "delta": rest})
            await self.emit(result)

    # -- partial decodes ---------------------------------------------------------------------------
    async def _maybe_decode(self) -> None:
        turn, interval, end = self.turn, wire.DELAYS[self.config.delay], self.buffer.end
        if turn is None:
            return
        if end - turn.start > WINDOW:  # Whisper's window: with server VAD the turn goes on as a new one
            if self.detector is not None and self.detector.in_speech:
                await self._cut(turn, turn.start + WINDOW)
            return
        if interval is None or (turn.partial is not None and not turn.partial.done()):
            return
        known = self.config.language or turn.language
        first = MIN_PARTIAL if known else LANGUAGE_AUDIO  # without a language, none is guessed on less
        if end - turn.start >= first and end - turn.decoded_to >= interval * RATE:
            turn.decoded_to = end
            turn.partial = asyncio.create_task(self._partial(turn, self.buffer.span(turn.start, end)))

    async def _cut(self, turn: Turn, at: int) -> None:
        """A turn too long to hold ends at ``at``, and the speech goes on as the next turn (server VAD);
        when the speaker is in a pause, the turn ends where the speech did and the next word starts a turn."""
        assert self.detector is not None  # noqa: S101 - only called with server VAD
        if self.detector.last_speech < self.vad_done:
            at = max(turn.start, min(at, self.detector.last_speech))
            await self._end_turn(turn, at, stopped=True)
            self.detector.reset()
            self.buffer.drop_before(at)
            return
        await self._end_turn(turn, at, stopped=True)
        self.buffer.drop_before(at)
        following = self._open(at)
        await self.emit({"type": wire.SPEECH_STARTED, "item_id": following.item_id, "audio_start_ms": wire.ms(at)})

    async def _partial(self, turn: Turn, audio: np.ndarray) -> None:
        try:
            decoded = await asyncio.to_thread(
                self.decode, audio, self.config, final=False, language=turn.language, cancel=turn.cancel
            )
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - a failed partial only delays the text
            log.warning("live item %s: partial decode failed: %s: %s", turn.item_id, type(exc).__name__, exc)
            return
        if turn.cancel.is_set() or self.turn is not turn:
            return
        if audio.size >= LANGUAGE_AUDIO:  # detected on less, a language is a guess (0.5 s: "ja" for English)
            turn.language = turn.language or decoded.language
        new = turn.agreement.update(decoded.text)
        if new:
            first = len(turn.agreement.sent) == len(new)
            await self.emit({"type": wire.DELTA, "item_id": turn.item_id, "delta": joined(new, first)})

    # -- the end -----------------------------------------------------------------------------------
    async def close(self, *, finish: bool) -> None:
        """``finish``: let the committed items be answered (a clean close); otherwise cancel them."""
        self.closed = True
        self._abandon_turn()
        if not finish:
            for item in self.items:
                item.task.cancel()
        if self._releasing is not None:
            if finish:
                with contextlib.suppress(Exception):
                    await self._releasing
            else:
                self._releasing.cancel()


async def _value(value: dict) -> dict:
    return value
