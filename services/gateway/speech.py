"""Speech work without HTTP: validate, ask the TTS backend for PCM, encode the requested format,
whole or chunk by chunk as the backend synthesises."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import numpy as np

from services.gateway import sse
from services.gateway.audio_encoding import AudioEncoder, encode_whole
from services.gateway.backends import Backend, new_request
from services.gateway.errors import BackendFailed, InvalidRequest
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings

STREAMED_BY_DEFAULT = ("mp3", "opus", "aac", "pcm")  # containers that need no final header


def check_request(req: SpeechRequest, settings: GatewaySettings) -> None:
    """Everything that can be a 4xx, decided before any audio is made."""
    if req.model not in settings.speech_models:
        raise InvalidRequest(f"The model '{req.model}' does not exist or is not a speech model; "
                             f"use one of {settings.speech_models}", param="model", code="model_not_found")
    if not req.input.strip():
        raise InvalidRequest("input must contain text", param="input", code="invalid_value")


def streamed(req: SpeechRequest) -> bool:
    """SSE always streams; otherwise ``stream`` decides, and when it is omitted the formats
    whose container needs no final header stream (wav and flac come whole, with exact sizes)."""
    if req.stream_format == "sse":
        return True
    return req.stream if req.stream is not None else req.response_format in STREAMED_BY_DEFAULT


def backend_request(req: SpeechRequest):
    header = new_request({"voice": req.voice_name, "speed": req.speed})
    header.json_inputs.append({"name": "text", "datatype": "BYTES", "shape": [1], "data": [req.input]})
    header.binary_outputs = True
    return header


async def synthesize(backend: Backend, req: SpeechRequest, settings: GatewaySettings) -> bytes:
    audio = await backend.infer(backend_request(req), "audio")
    rate = audio.parameters.get("sample_rate")
    if audio.raw is None or not rate or len(audio.raw) % 4:
        raise BackendFailed("TTS backend returned audio without float32 samples or a sample rate")
    samples = np.frombuffer(audio.raw, dtype="<f4")
    return encode_whole(samples, int(rate), req.response_format, settings.speech_sample_rate)


class PcmStream:
    """The backend's streamed float32 PCM, opened (so its errors are HTTP errors) but not yet read."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.rate = int(response.headers.get("x-sample-rate", 0))
        self.samples_seen = 0
        if self.rate <= 0:
            raise BackendFailed("TTS backend stream has no sample rate")

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        rest = b""
        try:
            async for data in self.response.aiter_bytes():
                data, cut = rest + data, (len(rest) + len(data)) // 4 * 4
                rest = data[cut:]
                if cut:
                    self.samples_seen += cut // 4
                    yield np.frombuffer(data[:cut], dtype="<f4")
        except httpx.HTTPError as exc:
            raise BackendFailed(f"TTS backend stream broke off: {type(exc).__name__}: {exc}") from exc
        finally:
            await self.response.aclose()


async def open_stream(backend: Backend, req: SpeechRequest) -> PcmStream:
    body = backend_request(req).encode()
    response = await backend.open_stream(body, {"content-type": "application/json"})
    try:
        return PcmStream(response)
    except BackendFailed:
        await response.aclose()
        raise


async def encoded(pcm: PcmStream, req: SpeechRequest, settings: GatewaySettings) -> AsyncIterator[bytes]:
    """Encoded audio bytes as soon as the muxer writes them."""
    encoder = AudioEncoder(req.response_format, pcm.rate, settings.speech_sample_rate, streaming=True)
    async for samples in pcm.chunks():
        if data := encoder.feed(samples):
            yield data
    if tail := encoder.finish():
        yield tail


async def sse_events(pcm: PcmStream, req: SpeechRequest, settings: GatewaySettings) -> AsyncIterator[bytes]:
    """OpenAI's ``speech.audio.delta`` events (base64 audio), then ``speech.audio.done``. Coqui models
    have no tokens: usage counts input characters and output audio in 20 ms frames."""
    try:
        async for data in encoded(pcm, req, settings):
            yield sse.event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except BackendFailed as exc:
        yield sse.error_event(exc.message, "backend_stream_failed")
        return
    frames = int(pcm.samples_seen / pcm.rate * 50)
    usage = {"input_tokens": len(req.input), "output_tokens": frames, "total_tokens": len(req.input) + frames}
    yield sse.event({"type": "speech.audio.done", "usage": usage})

