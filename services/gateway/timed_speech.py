"""Speech with word timings (``word_timestamps`` on ``POST /v1/audio/speech``): the input spoken
sentence by sentence, each sentence's words timed in its audio by the ASR predictor
(``word_timings``), the next sentence synthesised while the last one is aligned. The first sentence is
made and timed before the response starts, so its failures (a language no aligner serves, a
predictor down) are HTTP errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from services.gateway import sse
from services.gateway.audio_encoding import AudioEncoder
from services.gateway.backends import Backend
from services.gateway.errors import BadRequest, ServiceError
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings
from services.gateway.speech_stream.splitter import TextSplitter
from services.gateway.synthesis import Samples, encode, encode_step, streamed, synthesize_samples
from services.gateway.word_timings import align_words

MAX_SENTENCE_CHARS = 4096


@dataclass(frozen=True)
class TimedPiece:
    made: Samples
    words: list[dict]  # seconds from the start of the whole speech


def check_timed(req: SpeechRequest) -> None:
    if streamed(req) and req.stream_format != "sse":
        raise BadRequest(
            "word_timestamps needs stream_format 'sse' (each event carries its words) or a whole response "
            "(stream: false)",
            param="word_timestamps",
            code="invalid_value",
        )


def sentences(text: str) -> list[str]:
    splitter = TextSplitter("sentence", MAX_SENTENCE_CHARS)
    return splitter.feed(text) + splitter.flush()


async def timed_pieces(
    tts: Backend, asr: Backend, req: SpeechRequest, settings: GatewaySettings
) -> AsyncIterator[TimedPiece]:
    texts = sentences(req.input)

    def synthesize(text: str) -> asyncio.Task[Samples]:
        return asyncio.create_task(synthesize_samples(tts, req.model_copy(update={"input": text})))

    upcoming = synthesize(texts[0])
    offset = 0.0
    try:
        for i, text in enumerate(texts):
            made = await upcoming
            if i + 1 < len(texts):
                upcoming = synthesize(texts[i + 1])
            words = await align_words(
                asr, made.samples, made.rate, text, made.language or "en", model=settings.word_timings_model,
                offset=offset,
            )  # fmt: skip
            yield TimedPiece(made, words)
            offset += made.seconds
    finally:
        upcoming.cancel()
        with contextlib.suppress(BaseException):
            await upcoming


async def first_of(pieces: AsyncIterator[TimedPiece]) -> TimedPiece:
    return await anext(pieces)


async def timed_json(first: TimedPiece, rest: AsyncIterator[TimedPiece], req: SpeechRequest, out_rate: int) -> dict:
    """The whole file and every word: ``{audio, response_format, duration, words}``."""
    pieces = [first] + [piece async for piece in rest]
    samples = np.concatenate([p.made.samples for p in pieces])
    rate = first.made.rate
    data = await encode(req.response_format, samples, rate, out_rate)
    return {
        "audio": base64.b64encode(data).decode(),
        "response_format": req.response_format,
        "duration": round(samples.size / rate, 3),
        "words": [w for p in pieces for w in p.words],
    }


async def timed_sse(
    first: TimedPiece, rest: AsyncIterator[TimedPiece], req: SpeechRequest, out_rate: int
) -> AsyncIterator[bytes]:
    """One ``speech.audio.delta`` per sentence, its audio (continuing one stream of the format) and its
    ``words``; then ``speech.audio.done`` with usage. A failure after the first event is an ``error`` event."""
    encoder = AudioEncoder(req.response_format, first.made.rate, out_rate, streaming=True)
    seconds = 0.0

    async def pieces() -> AsyncIterator[TimedPiece]:
        yield first
        async for piece in rest:
            yield piece

    try:
        async for piece in pieces():
            data = await encode_step(req.response_format, encoder.feed, piece.made.samples)
            seconds += piece.made.seconds
            yield sse.event(
                {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode(), "words": piece.words}
            )
        if tail := await encode_step(req.response_format, encoder.finish):
            yield sse.event({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode(), "words": []})
    except ServiceError as exc:
        yield sse.error_event(exc.message, exc.code)
        return
    frames = int(seconds * 50)
    usage = {"input_tokens": len(req.input), "output_tokens": frames, "total_tokens": len(req.input) + frames}
    yield sse.event({"type": "speech.audio.done", "usage": usage})
