"""The TTS predictor (and its voice library routes, ``voice_routes``). Request: v2 with the
text as one BYTES element, options as parameters.
Answer: float32 PCM as a binary FP32 output, or on the streaming route raw little-endian float32 PCM
as it is synthesised (``x-sample-rate`` header); both say the language it was spoken in (the output's
``language`` parameter, the ``x-language`` header) for word timings."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Scope

from services.common import v2wire
from services.common.draining import Drain
from services.common.errors import BadRequest
from services.common.predictor import LazyPredictor, TensorSpec
from services.common.work import Emit
from services.tts.engine import Audio, SpeechJob, TtsEngine
from services.tts.voice_routes import BODY_OVERHEAD, add_voice_routes


class TtsPredictor(LazyPredictor):
    speech_engine: TtsEngine
    label = "TTS"
    inputs = (TensorSpec("text", "BYTES", (1,)), TensorSpec("reference", "BYTES", (1,)))
    outputs = (TensorSpec("audio", "FP32", (-1,)),)

    def public_models(self) -> list[str]:
        return self.speech_engine.public_models

    def add_routes(self, app: FastAPI, drain: Drain) -> None:
        add_voice_routes(app, self, self.speech_engine)

    def body_limit(self, scope: Scope) -> int:
        if scope["path"] in ("/voices", "/consents"):  # read an oversized sample whole: its 413 names the limit
            return 4 * self.speech_engine.settings.max_sample_bytes + BODY_OVERHEAD
        return self.settings.max_body_bytes

    def models_status(self) -> dict:
        return {"model": self.speech_engine.coqui.status(), "streams_cancelled": self.speech_engine.streams_cancelled}

    def prepare(self, request: v2wire.InferRequest) -> SpeechJob:
        try:
            (raw,) = request.tensor("text").elements()
            text = bytes(raw).decode("utf-8")
            given = request.optional("reference")
            (reference,) = given.elements() if given is not None else (None,)
        except (v2wire.WireError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadRequest(
                "TTS backend: input 'text' must be one UTF-8 BYTES element", param="input", code="malformed_request"
            ) from exc
        return self.speech_engine.job(request.parameters, text, reference)

    def run(self, job: SpeechJob, cancel: threading.Event) -> list[v2wire.BinaryOutput]:
        audio = self.speech_engine.synthesize(job, cancel)
        samples = audio.samples.astype("<f4", copy=False)
        return [
            v2wire.BinaryOutput(
                "audio",
                "FP32",
                [int(samples.size)],
                samples.tobytes(),
                {"sample_rate": audio.sample_rate, "language": audio.language},
            )
        ]

    def produce(self, job: SpeechJob, emit: Emit, cancel: threading.Event) -> None:
        for chunk in self.speech_engine.stream(job, cancel):
            emit(chunk)

    def stream_body(self, first: Audio, items: AsyncIterator[Audio]) -> StreamingResponse:
        """Little-endian float32 mono PCM at ``x-sample-rate``, sent as it is synthesised. A failure
        after the first chunk breaks the response off: a raw audio stream has no in-band errors."""

        async def body() -> AsyncIterator[bytes]:
            yield first.samples.astype("<f4").tobytes()
            async for chunk in items:
                yield chunk.samples.astype("<f4").tobytes()

        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"x-sample-rate": str(first.sample_rate), "x-language": first.language},
        )
