"""The ASR KServe predictor: v2 infer in, one rich JSON transcription result out; plus a streaming
route (KServe has none for this) that sends NDJSON events as batches are decoded."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from services.asr.audio import BadAudio
from services.asr.engine import AsrEngine, TranscribeOptions, UnknownModel, UnsupportedOption
from services.common.predictor_server import LazyPredictor, raw_bytes_element, split_first
from services.common.streaming import iterate_in_thread


def _int_or_none(value) -> int | None:
    return None if value in (None, "") else int(value)


def options_from(params: dict) -> TranscribeOptions:
    try:
        return TranscribeOptions(
            model=str(params["model"]), task=str(params.get("task", "transcribe")),
            language=params.get("language") or None, prompt=params.get("prompt") or None,
            temperature=float(params.get("temperature", 0.0)),
            word_timestamps=bool(params.get("word_timestamps", False)), diarize=bool(params.get("diarize", False)),
            min_speakers=_int_or_none(params.get("min_speakers")),
            max_speakers=_int_or_none(params.get("max_speakers")),
            logprobs=bool(params.get("logprobs", False)),
            known_speakers=_known_speakers(params.get("known_speakers")))
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InvalidInput(f"bad request parameters: {exc!r}") from exc


def _known_speakers(value) -> tuple[tuple[str, bytes], ...]:
    """``[{"name": ..., "reference": <base64 audio>}, ...]`` as a JSON string (a v2 parameter)."""
    if not value:
        return ()
    return tuple((str(item["name"]), base64.b64decode(item["reference"], validate=True))
                 for item in json.loads(value))


def _input(payload: InferRequest, name: str):
    for tensor in payload.inputs:
        if tensor.name == name:
            return tensor
    raise InvalidInput(f"input '{name}' is missing")


def _event(kind: str, **fields) -> bytes:
    return json.dumps({"type": kind, **fields}).encode() + b"\n"


class AsrPredictor(LazyPredictor):
    engine: AsrEngine
    client_errors = (BadAudio, UnknownModel, UnsupportedOption)

    def status(self) -> dict:
        """Whisper per public id, aligners per language, diarization: loaded, in use, load count."""
        return self.engine.models_status()

    def _prepare(self, payload: InferRequest) -> tuple[bytes, TranscribeOptions]:
        audio = raw_bytes_element(_input(payload, "audio"))
        options = options_from(payload.parameters or {})
        with self.kserve_errors():
            self.engine.validate(options)
        return audio, options

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        audio, options = self._prepare(payload)
        with self.kserve_errors():
            async with self._slots:
                result = await asyncio.to_thread(self.engine.run, audio, options)
        output = InferOutput("result", [1], "BYTES", data=[json.dumps(result)])
        return InferResponse(payload.id, self.name, [output])

    async def stream_response(self, payload: InferRequest) -> StreamingResponse:
        _, events = await split_first(self.stream(payload))
        return StreamingResponse(events, media_type="application/x-ndjson")

    async def stream(self, payload: InferRequest) -> AsyncIterator[bytes]:
        """``{"type":"text","text":...}`` (with ``logprobs`` when asked) per decoded batch or segment,
        then ``result``. A failure
        before the first event is raised (so it becomes an HTTP error); later, an ``error`` event."""
        audio, options = self._prepare(payload)

        def produce(emit, cancel) -> None:
            def on_text(text: str, logprobs: list[dict] | None) -> None:
                emit(_event("text", text=text, **({} if logprobs is None else {"logprobs": logprobs})))

            with self.kserve_errors():
                emit(_event("result", result=self.engine.run(audio, options, on_text, cancel)))

        sent = False
        try:
            async for event in iterate_in_thread(produce, self._slots):
                yield event
                sent = True
        except Exception as exc:  # noqa: BLE001 - after the 200 only an in-band error is possible
            if not sent:
                raise
            yield _event("error", message=str(exc), kind=type(exc).__name__)
