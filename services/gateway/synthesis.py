"""Speech work without HTTP: validate, ask the TTS backend for PCM, encode the requested format,
whole or chunk by chunk as the backend synthesises. Encoding runs in worker threads, never on the
event loop."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import av
import httpx
import numpy as np

from services.common import v2wire
from services.common.errors import echo
from services.gateway import sse
from services.gateway.audio_encoding import AudioEncoder, encode_whole
from services.gateway.backends import Backend, Blob, new_request
from services.gateway.catalog import ModelCatalog
from services.gateway.errors import BackendFailed, BadRequest, ServiceError
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class EncodingFailed(ServiceError):
    status = 500


STREAMED_BY_DEFAULT = ("mp3", "opus", "aac", "pcm")  # containers that need no final header


async def check_request(req: SpeechRequest, catalog: ModelCatalog) -> None:
    """Everything that can be a 4xx and needs no model, decided before any audio is made."""
    if await catalog.knows("speech", req.model) is False:
        served = await catalog.ids("speech")
        raise BadRequest(
            f"The model '{echo(req.model)}' does not exist or is not a speech model; use one of {served}",
            param="model",
            code="model_not_found",
        )
    if not req.input.strip():
        raise BadRequest("input must contain text", param="input", code="invalid_value")


def streamed(req: SpeechRequest) -> bool:
    """SSE always streams; otherwise ``stream`` decides, and when it is omitted the formats
    whose container needs no final header stream (wav and flac come whole, with exact sizes)."""
    if req.stream_format == "sse":
        return True
    return req.stream if req.stream is not None else req.response_format in STREAMED_BY_DEFAULT


def _backend_request(
    req: SpeechRequest, language: str | None = None, reference: bytes | None = None
) -> tuple[v2wire.InferRequestHeader, list[Blob]]:
    """``reference``: a WAV of a speaker whose voice says it (the TTS predictor clones it) instead of ``voice``."""
    parameters = {"model": req.model, "voice": req.voice_name, "speed": req.speed}
    header = new_request(parameters | ({"language": language} if language else {}))
    blobs = [Blob.of("text", [req.input.encode("utf-8")])]
    return header, blobs + ([Blob.of("reference", [reference])] if reference is not None else [])


@dataclass(frozen=True)
class Samples:
    """Synthesised speech before encoding: float32 mono at ``rate``, spoken in ``language``."""

    samples: np.ndarray
    rate: int
    language: str

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


async def synthesize_samples(backend: Backend, req: SpeechRequest, language: str | None = None) -> Samples:
    """The whole of ``req.input`` as samples (not encoded)."""
    header, blobs = _backend_request(req, language)
    audio = await backend.infer(header, blobs, "audio")
    rate = audio.parameters.get("sample_rate")
    if audio.raw is None or not rate or len(audio.raw) % 4:
        raise backend.malformed(ValueError("no float32 samples or no sample rate"))
    spoken = audio.parameters.get("language")
    return Samples(np.frombuffer(audio.raw, dtype="<f4"), int(rate), str(spoken or language or ""))


async def synthesize(backend: Backend, req: SpeechRequest, settings: GatewaySettings) -> tuple[bytes, float]:
    """The whole file, and its duration in seconds."""
    made = await synthesize_samples(backend, req)
    data = await encode(req.response_format, made.samples, made.rate, settings.speech_sample_rate)
    return data, made.seconds


async def encode(fmt: str, samples: np.ndarray, rate: int, out_rate: int) -> bytes:
    """A whole file in ``fmt``, encoded in a worker thread (an encoder failure is named)."""
    return await encode_step(fmt, encode_whole, samples, rate, fmt, out_rate)


class PcmStream:
    """The backend's streamed float32 PCM, opened (so its errors are HTTP errors) but not yet read."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        rate = response.headers.get("x-sample-rate", "")
        self.rate = int(rate) if rate.isdigit() else 0
        self.language = response.headers.get("x-language", "")
        self.samples_seen = 0
        if self.rate <= 0:
            raise BackendFailed("TTS backend stream has no sample rate", code="backend_failed")

    @property
    def seconds(self) -> float:
        return self.samples_seen / self.rate

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        rest = b""
        try:
            async for received in self.response.aiter_bytes():
                data = rest + received
                cut = len(data) // 4 * 4
                rest = data[cut:]
                if cut:
                    self.samples_seen += cut // 4
                    yield np.frombuffer(data[:cut], dtype="<f4")
        except httpx.HTTPError as exc:
            log.warning("TTS backend stream broke off: %s: %s", type(exc).__name__, exc)
            raise BackendFailed("TTS backend stream broke off", code="backend_stream_failed") from exc
        finally:
            await self.response.aclose()


async def open_stream(
    backend: Backend, req: SpeechRequest, language: str | None = None, reference: bytes | None = None
) -> PcmStream:
    header, blobs = _backend_request(req, language, reference)
    response = await backend.open_stream(header, blobs)
    try:
        return PcmStream(response)
    except BackendFailed:
        await response.aclose()
        raise


async def encoded(
    pcm: PcmStream, req: SpeechRequest, settings: GatewaySettings, on_end: Callable[[float], None]
) -> AsyncIterator[bytes]:
    """Encoded audio bytes as soon as the muxer writes them. A backend failure after the first byte
    cuts the response off (the HTTP client sees an incomplete body, never a short file that looks whole)."""
    encoder = AudioEncoder(req.response_format, pcm.rate, settings.speech_sample_rate, streaming=True)
    async for samples in pcm.chunks():
        if data := await encode_step(req.response_format, encoder.feed, samples):
            yield data
    if tail := await encode_step(req.response_format, encoder.finish):
        yield tail
    on_end(pcm.seconds)


async def encode_step(fmt: str, step: Callable[..., bytes], *args: Any) -> bytes:
    """One encoder step in a worker thread; an encoder failure is named (an ``error`` event in SSE)."""
    try:
        return await asyncio.to_thread(step, *args)
    except (av.FFmpegError, ValueError, OSError) as exc:
        log.warning("encoding %s failed: %s: %s", fmt, type(exc).__name__, exc)
        raise EncodingFailed(f"encoding the audio as {fmt} failed", code="encoding_failed") from exc


async def sse_events(
    pcm: PcmStream, req: SpeechRequest, settings: GatewaySettings, on_end: Callable[[float], None]
) -> AsyncIterator[bytes]:
    """OpenAI's ``speech.audio.delta`` events (base64 audio), then ``speech.audio.done``; a backend
    failure after the 200 is an ``error`` event. Coqui models have no tokens: usage counts input
    characters and output audio in 20 ms frames."""
    try:
        async for data in encoded(pcm, req, settings, on_end):
            yield sse.event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except ServiceError as exc:  # the backend's stream broke off, or encoding failed
        yield sse.error_event(exc.message, exc.code)
        return
    frames = int(pcm.seconds * 50)
    usage = {"input_tokens": len(req.input), "output_tokens": frames, "total_tokens": len(req.input) + frames}
    yield sse.event({"type": "speech.audio.done", "usage": usage})
