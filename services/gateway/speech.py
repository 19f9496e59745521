"""Speech work without HTTP: validate, ask the TTS backend for PCM, encode the requested format."""

from __future__ import annotations

import numpy as np

from services.gateway.audio_encoding import encode_whole
from services.gateway.backends import Backend, new_request
from services.gateway.errors import BackendFailed, InvalidRequest
from services.gateway.protocol.speech import SpeechRequest
from services.gateway.settings import GatewaySettings


def check_request(req: SpeechRequest, settings: GatewaySettings) -> None:
    """Everything that can be a 4xx, decided before any audio is made."""
    if req.model not in settings.speech_models:
        raise InvalidRequest(f"The model '{req.model}' does not exist or is not a speech model; "
                             f"use one of {settings.speech_models}", param="model", code="model_not_found")
    if not req.input.strip():
        raise InvalidRequest("input must contain text", param="input", code="invalid_value")


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
