"""The TTS KServe predictor: v2 infer with the text in, float32 PCM out as a binary tensor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from services.common.lifecycle import ModelLoadError
from services.tts.engine import BadSpeechRequest, SpeechOptions, TtsEngine


@contextmanager
def kserve_errors(model_name: str) -> Iterator[None]:
    try:
        yield
    except BadSpeechRequest as exc:
        raise InvalidInput(str(exc)) from exc
    except ModelLoadError as exc:
        raise ModelNotReady(model_name, str(exc)) from exc


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


class TtsPredictor(Model):
    def __init__(self, name: str, engine: TtsEngine, max_concurrency: int) -> None:
        super().__init__(name)
        self.engine = engine
        self._slots = asyncio.Semaphore(max_concurrency)

    def load(self) -> bool:
        # Ready means "accepting requests": the Coqui model loads lazily on the first one.
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        options = options_from(payload)
        with kserve_errors(self.name):
            self.engine.validate(options)
            async with self._slots:
                audio = await asyncio.to_thread(self.engine.synthesize, options)
        output = InferOutput("audio", [int(audio.samples.size)], "FP32", data=audio.samples,
                             parameters={"sample_rate": audio.sample_rate})
        return InferResponse(payload.id, self.name, [output], use_binary_outputs=True)
