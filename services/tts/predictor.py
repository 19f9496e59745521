"""The TTS KServe predictor: v2 infer with the text in, float32 PCM out as a binary tensor; plus a
streaming route (KServe has none for audio) that sends raw float32 PCM as it is synthesised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from services.common.predictor_server import LazyPredictor, split_first
from services.common.streaming import iterate_in_thread
from services.tts.engine import Audio, BadSpeechRequest, SpeechOptions, TtsEngine


def options_from(payload: InferRequest) -> SpeechOptions:
    params = payload.parameters or {}
    text = next((t.data for t in payload.inputs if t.name == "text"), None)
    if not text or not isinstance(text[0], str):
        raise InvalidInput("input 'text' (BYTES, one UTF-8 string) is missing")
    try:
        return SpeechOptions(text=text[0], voice=params.get("voice") or None,
                             speed=float(params.get("speed", 1.0)),
                             language=params.get("language") or None)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad request parameters: {exc!r}") from exc


class TtsPredictor(LazyPredictor):
    engine: TtsEngine
    client_errors = (BadSpeechRequest,)

    def status(self) -> dict:
        return {"model": self.engine.model.status(), "streams_cancelled": self.engine.streams_cancelled}

    def _options(self, payload: InferRequest) -> SpeechOptions:
        options = options_from(payload)
        with self.kserve_errors():
            self.engine.validate(options)
        return options

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        options = self._options(payload)
        with self.kserve_errors():
            async with self._slots:
                audio = await asyncio.to_thread(self.engine.synthesize, options)
        output = InferOutput("audio", [int(audio.samples.size)], "FP32", data=audio.samples,
                             parameters={"sample_rate": audio.sample_rate})
        return InferResponse(payload.id, self.name, [output], use_binary_outputs=True)

    async def stream_response(self, payload: InferRequest) -> StreamingResponse:
        """Little-endian float32 mono PCM at ``x-sample-rate``, sent as it is synthesised."""
        first, chunks = await split_first(self.stream(payload))

        async def body() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk.samples.astype("<f4").tobytes()

        return StreamingResponse(body(), media_type="application/octet-stream",
                                 headers={"x-sample-rate": str(first.sample_rate), "x-audio-format": "f32le"})

    def stream(self, payload: InferRequest) -> AsyncIterator[Audio]:
        """Chunks as they are made; a failure before the first chunk reaches the caller as an error."""
        options = self._options(payload)

        def produce(emit, cancel) -> None:
            with self.kserve_errors():
                for chunk in self.engine.stream(options, cancel):
                    emit(chunk)

        return iterate_in_thread(produce, self._slots)
