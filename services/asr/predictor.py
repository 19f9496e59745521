"""The ASR KServe predictor: v2 infer in, one rich JSON transcription result out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager

from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from services.asr.audio import BadAudio
from services.asr.engine import AsrEngine, TranscribeOptions, UnknownModel, UnsupportedOption
from services.common.lifecycle import ModelLoadError
from services.common.predictor_server import raw_bytes_element


@contextmanager
def kserve_errors(model_name: str) -> Iterator[None]:
    """Engine exceptions -> KServe's (400 for the client's fault, 503 when a model cannot load)."""
    try:
        yield
    except (BadAudio, UnknownModel, UnsupportedOption) as exc:
        raise InvalidInput(str(exc)) from exc
    except ModelLoadError as exc:
        raise ModelNotReady(model_name, str(exc)) from exc


def options_from(params: dict) -> TranscribeOptions:
    try:
        return TranscribeOptions(
            model=str(params["model"]),
            task=str(params.get("task", "transcribe")),
            language=params.get("language") or None,
            prompt=params.get("prompt") or None,
            temperature=float(params.get("temperature", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"bad request parameters: {exc!r}") from exc


class AsrPredictor(Model):
    def __init__(self, name: str, engine: AsrEngine, max_concurrency: int) -> None:
        super().__init__(name)
        self.engine = engine
        self._slots = asyncio.Semaphore(max_concurrency)

    def load(self) -> bool:
        # Ready means "accepting requests": WhisperX itself loads lazily on the first one.
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        audio = raw_bytes_element(_input(payload, "audio"))
        options = options_from(payload.parameters or {})
        if options.task not in ("transcribe", "translate"):
            raise InvalidInput(f"unknown task '{options.task}'")
        with kserve_errors(self.name):
            self.engine.validate(options)
            async with self._slots:
                result = await asyncio.to_thread(self.engine.run, audio, options)
        output = InferOutput("result", [1], "BYTES", data=[json.dumps(result)])
        return InferResponse(payload.id, self.name, [output])


def _input(payload: InferRequest, name: str):
    for tensor in payload.inputs:
        if tensor.name == name:
            return tensor
    raise InvalidInput(f"input '{name}' is missing")
