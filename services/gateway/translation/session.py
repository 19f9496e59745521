"""One Realtime translation session: OpenAI's ``realtime.translations`` protocol on the client's side;
on the other, the ASR predictor's live session (turns by its VAD, each transcribed then translated:
Whisper's translate task into English, the text translation model into other languages) and the TTS
predictor, which speaks each translated sentence, by default in the speaker's own voice (XTTS
conditioned on the session's first seconds of speech, refreshed as more arrives).

Events: ``session.input_transcript.delta`` (when ``audio.input.transcription`` is set),
``session.output_transcript.delta`` per translated turn, ``session.output_audio.delta`` (PCM16 at
24 kHz) as each sentence is synthesised; ``elapsed_ms`` is the input time the text or audio belongs to
(the end of its turn for output), in 200 ms steps. A translation the speech model cannot speak still
arrives as text, followed by an ``error`` event.

Bounded like transcription sessions (``services.gateway.realtime.session``), plus: the translated text
waiting to be spoken (``MAX_WAITING`` turns; beyond, a turn is not spoken and an error says so), the
audio waiting for the client (``OUTBOX_BYTES``: the synthesis waits for a client that reads slowly),
and the speaker's reference (``services.gateway.translation.speaker``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from services.common import live_wire as wire
from services.common.errors import ServiceError, echo
from services.gateway.audio_encoding import AudioEncoder
from services.gateway.backends import Backend
from services.gateway.metrics import GatewayMetrics
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.realtime.config import ConfigError
from services.gateway.realtime.session import ClientEventError, Outbox, RealtimeSession, SessionClosed
from services.gateway.settings import GatewaySettings
from services.gateway.speech_stream.splitter import TextSplitter
from services.gateway.synthesis import encode_step, open_stream
from services.gateway.translation.config import SPEAKER, TranslationConfig
from services.gateway.translation.speaker import RATE, RING_SECONDS, SpeakerReference

log = logging.getLogger(__name__)
OUTBOX_BYTES = 4 << 20  # about 65 s of audio as base64 deltas
MAX_WAITING = 16  # translated turns waiting to be spoken
STEP_MS = 200  # elapsed_ms advances in OpenAI's 200 ms translation frames
CONFIGURE_SECONDS = 120.0  # the predictor may load the translation model to check a target language
MAX_SENTENCE_CHARS = 400


def memory_bound(settings: GatewaySettings) -> int:
    """Bytes one translation session can hold at once: a message and its audio, the outbox, the
    speaker's ring and reference (and the reference's WAV)."""
    reference = int(settings.translation_voice_seconds * RATE) * 2
    return settings.realtime_max_event_bytes * 7 // 4 + OUTBOX_BYTES + RING_SECONDS * RATE * 2 + 2 * reference


def step(ms: int) -> int:
    return ms // STEP_MS * STEP_MS


@dataclass(frozen=True)
class Translated:
    item_id: str
    text: str
    language: str
    elapsed_ms: int
    ended: float  # when the turn's speech ended (monotonic), for the latency metrics


class TranslationSession(RealtimeSession):
    def __init__(
        self,
        *args: Any,
        config: TranslationConfig,
        tts: Backend,
        metrics: GatewayMetrics,
        speech_model: str,
        fallback_voice: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.config: TranslationConfig = config  # type: ignore[assignment]
        self.outbox = Outbox(OUTBOX_BYTES)
        self.tts, self.metrics = tts, metrics
        self.speech_model, self.fallback_voice = speech_model, fallback_voice
        self.speaker = SpeakerReference(self.settings.translation_voice_seconds)
        self.cloning = True  # false once the speech model said it cannot clone
        self.received = 0  # input samples (24 kHz) so far
        self.starts: dict[str, int] = {}  # item -> audio_start_ms
        self.ends: dict[str, tuple[int, float]] = {}  # item -> (audio_end_ms, when it was heard)
        self.sent_input = self.sent_output = False  # a delta went out: later turns start with a space
        self.waiting: asyncio.Queue[Translated] = asyncio.Queue(MAX_WAITING)
        self.unspoken = 0  # translated turns queued or being spoken
        self.acks: dict[str, asyncio.Future[dict]] = {}
        self.speaker_task: asyncio.Task | None = None

    def created(self) -> dict:
        return {"type": "session.created", "session": self.config.render(self.id, self.expires_at)}

    async def run(self) -> None:
        self.speaker_task = asyncio.create_task(self._speak())
        try:
            await super().run()
        finally:
            self.speaker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.speaker_task

    # -- client events ----------------------------------------------------------------------------
    async def dispatch(self, kind: str, event: dict, event_id: Any) -> None:
        if kind == "session.update":
            await self.update(event.get("session"), beta=False)
        elif kind == "session.input_audio_buffer.append":
            await self.append(event.get("audio"), event_id)
        elif kind == "session.close":
            await self._flush()
            raise SessionClosed(1000, "session closed")
        else:
            raise ClientEventError(
                f"Invalid value: '{echo(kind)}'. A translation session takes session.update, "
                "session.input_audio_buffer.append and session.close.",
                "invalid_value",
                "type",
            )

    async def update(self, session: Any, *, beta: bool = False) -> None:
        config = self.config.update(session)
        if config.transcription not in (None, self.config.transcription) and (
            await self.catalog.knows("transcription", config.transcription) is False
        ):
            served = await self.catalog.ids("transcription")
            raise ConfigError(
                f"The model '{echo(config.transcription)}' is not a transcription model; use one of {served}",
                "session.audio.input.transcription.model",
            )
        answer = await self._ask({"type": wire.CONFIGURE, **config.wire()})
        if answer.get("type") == wire.ERROR:  # the predictor cannot translate into that language
            raise ClientEventError(str(answer.get("message")), str(answer.get("code")), answer.get("param"))
        self.config = config
        self.send({"type": "session.updated", "session": config.render(self.id, self.expires_at)})

    async def _configure(self) -> None:
        answer = await self._ask({"type": wire.CONFIGURE, **self.config.wire()})
        if answer.get("type") == wire.ERROR:  # the server's own default language cannot be translated into
            raise SessionClosed(1011, "configuration refused", (str(answer.get("code")), str(answer.get("message"))))

    async def _ask(self, control: dict) -> dict:
        """A control message, and the predictor's answer to it (``configured`` or ``error``)."""
        ask_id = f"ask_{len(self.acks)}_{time.monotonic_ns()}"
        answer: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.acks[ask_id] = answer
        try:
            await self.upstream.send(json.dumps({**control, "event_id": ask_id}))
            return await asyncio.wait_for(answer, CONFIGURE_SECONDS)
        except TimeoutError:
            raise SessionClosed(1011, "backend gone", ("backend_failed", "The ASR backend did not answer.")) from None
        finally:
            self.acks.pop(ask_id, None)

    async def forward(self, data: bytes, event_id: Any) -> None:
        self.speaker.heard(data, self.received)
        self.received += len(data) // 2
        await super().forward(data, event_id)

    async def _flush(self) -> None:
        """``session.close``: the turn being spoken ends here (a commit), and the predictor has taken it
        once a configure sent after it is answered (it handles messages in order)."""
        if self.starts:  # a turn is open (speech started, not yet stopped): a commit ends it
            await self.upstream.send(json.dumps({"type": wire.COMMIT, "event_id": "flush"}))
        await self._ask({"type": wire.CONFIGURE, **self.config.wire()})

    # -- the end ----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.pending) or self.unspoken > 0

    async def _drained(self) -> None:
        """A clean close: the committed turns translated, and what they said spoken."""
        await super()._drained()
        await self.waiting.join()

    def _last_events(self, closing: SessionClosed | None) -> None:
        super()._last_events(closing)
        if closing is not None and closing.reason == "session closed":
            self.send({"type": "session.closed"})

    # -- the predictor's events -------------------------------------------------------------------
    def _render(self, event: dict[str, Any]) -> None:
        kind, item_id = event.get("type"), str(event.get("item_id"))
        if kind in (wire.CONFIGURED, wire.ERROR) and event.get("event_id") in self.acks:
            self.acks[event["event_id"]].set_result(event)
        elif kind == wire.SPEECH_STARTED:
            self.starts[item_id] = int(event["audio_start_ms"])
        elif kind == wire.SPEECH_STOPPED:
            end = int(event["audio_end_ms"])
            self.ends[item_id] = (end, time.monotonic())
            self.speaker.turn(self.starts.pop(item_id, end), end)
        elif kind == wire.COMMITTED:
            self.pending.add(item_id)
            self.ends.setdefault(item_id, (self.received * 1000 // RATE, time.monotonic()))
        elif kind == wire.DELTA and self.config.transcription:
            self._input_delta(str(event["delta"]))
        elif kind == wire.COMPLETED:
            self._completed(item_id, event)
        elif kind == wire.FAILED:
            self._answered(item_id)
            self.ends.pop(item_id, None)
            self.error(str(event.get("message")), str(event.get("code")), type_="server_error")
        elif kind == wire.ERROR and event.get("event_id") != "flush":  # a close with nothing to commit
            super()._render(event)

    def _input_delta(self, delta: str) -> None:
        if not delta.strip():
            return
        text = (" " if self.sent_input and not delta.startswith(" ") else "") + delta
        self.sent_input = True
        self.send(
            {
                "type": "session.input_transcript.delta",
                "delta": text,
                "elapsed_ms": step(self.received * 1000 // RATE),
            }
        )

    def _completed(self, item_id: str, event: dict) -> None:
        self._answered(item_id)
        self._charge(float(event["seconds"]))
        end_ms, ended = self.ends.pop(item_id, (self.received * 1000 // RATE, time.monotonic()))
        for stage, seconds in (event.get("timings") or {}).items():
            self.metrics.translation.labels(stage).observe(float(seconds))
        failure, translation = event.get("translation_error"), event.get("translation")
        if failure:
            self.error(str(failure.get("message")), str(failure.get("code")), type_="server_error")
            return
        if not translation or not str(translation.get("text", "")).strip():
            return  # a turn with no words (a cough) says nothing
        text = str(translation["text"]).strip()
        self.send(
            {
                "type": "session.output_transcript.delta",
                "delta": (" " if self.sent_output else "") + text,
                "elapsed_ms": step(end_ms),
            }
        )
        self.sent_output = True
        try:
            self.waiting.put_nowait(Translated(item_id, text, str(translation["language"]), step(end_ms), ended))
            self.unspoken += 1
        except asyncio.QueueFull:
            self.error(
                f"{MAX_WAITING} translated turns are waiting to be spoken; this one is sent as text only.",
                "speech_backlog",
                type_="server_error",
            )

    # -- speaking ---------------------------------------------------------------------------------
    async def _speak(self) -> None:
        while True:
            turn = await self.waiting.get()
            try:
                await self._speak_turn(turn)
            except Exception as exc:  # noqa: BLE001 - this turn is not spoken; the session goes on
                log.warning("translation %s: speaking failed: %s: %s", turn.item_id, type(exc).__name__, exc)
                self.error("The translation could not be spoken.", "backend_failed", type_="server_error")
            finally:
                self.unspoken -= 1
                self.waiting.task_done()

    async def _speak_turn(self, turn: Translated) -> None:
        splitter = TextSplitter("sentence", MAX_SENTENCE_CHARS)
        first = True
        for sentence in [*splitter.feed(turn.text), *splitter.flush()]:
            try:
                await self.tenancy.characters(self.ws.scope, len(sentence))
                began = time.monotonic()
                sent = await self._speak_sentence(sentence, turn)
            except ServiceError as exc:
                code = exc.code or "backend_failed"
                self.error(f"The translation could not be spoken: {exc.message}", code, type_="server_error")
                return  # the turn's text went out; a model that cannot say one sentence cannot say the next
            if first and sent:
                self.metrics.translation.labels("synthesize").observe(time.monotonic() - began)
                self.metrics.translation.labels("first_audio").observe(time.monotonic() - turn.ended)
                first = False

    async def _speak_sentence(self, sentence: str, turn: Translated) -> bool:
        """The sentence as ``session.output_audio.delta`` events as the TTS predictor makes it; in the
        speaker's voice when the session asks for it and enough of their speech was heard (else the
        configured voice)."""
        reference = self.speaker.wav() if self.config.voice == SPEAKER and self.cloning else None
        voice = self.fallback_voice if self.config.voice == SPEAKER else self.config.voice
        req = SpeechRequest(model=self.speech_model, input=sentence, voice=voice, response_format="pcm")
        try:
            pcm = await open_stream(self.tts, req, turn.language, reference)
        except ServiceError as exc:
            if reference is None or exc.param != "reference":
                raise
            if exc.code == "voice_cloning_unsupported":  # said once; the configured voice from now on
                self.cloning = False
                self.error(f"{exc.message}; the configured voice speaks instead", exc.code, type_="server_error")
            pcm = await open_stream(self.tts, req, turn.language)
        encoder, sent = AudioEncoder("pcm", pcm.rate, RATE, streaming=True), False
        async for samples in pcm.chunks():
            sent = await self._audio(await encode_step("pcm", encoder.feed, samples), turn) or sent
        return await self._audio(await encode_step("pcm", encoder.finish), turn) or sent

    async def _audio(self, data: bytes, turn: Translated) -> bool:
        if not data:
            return False
        await self.outbox.room.wait()  # a slow reader slows the synthesis down
        self.send(
            {
                "type": "session.output_audio.delta",
                "delta": base64.b64encode(data).decode(),
                "sample_rate": RATE,
                "channels": 1,
                "format": "pcm16",
                "elapsed_ms": turn.elapsed_ms,
            }
        )
        return True
