"""The ASR predictor. Request: v2 with the audio as a binary BYTES input, the known-speaker
references as a second one, options as parameters. Answer: the rich result as one JSON document in a
binary BYTES output, or on the streaming route NDJSON events as batches are decoded."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from services.asr.engine import AsrEngine
from services.asr.job import TranscribeJob
from services.asr.live.route import add_live_route
from services.asr.vad import Vad
from services.common import v2wire
from services.common.draining import Drain
from services.common.errors import BadRequest, ServiceError
from services.common.predictor import LazyPredictor, TensorSpec
from services.common.work import Emit

log = logging.getLogger(__name__)


def _event(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


class AsrPredictor(LazyPredictor):
    speech_engine: AsrEngine
    label = "ASR"
    inputs = (TensorSpec("audio", "BYTES", (1,)), TensorSpec("known_speaker_references", "BYTES", (-1,)))
    outputs = (TensorSpec("result", "BYTES", (1,)),)

    def public_models(self) -> list[str]:
        return self.speech_engine.public_models

    def add_routes(self, app: FastAPI, drain: Drain) -> None:
        """``WS /v2/models/<name>/live``: live transcription for the gateway's realtime sessions."""
        add_live_route(
            app,
            self.name,
            decode=self.speech_engine.live,
            score=Vad().scores,
            settings=self.speech_engine.settings,
            drain=drain,
            translator=self.speech_engine.translator,
        )

    def models_status(self) -> dict:
        """Whisper per public id, aligners per language, diarization: loaded, in use, load count."""
        return self.speech_engine.models_status()

    def prepare(self, request: v2wire.InferRequest) -> TranscribeJob:
        try:
            (audio,) = request.tensor("audio").elements()
            refs = request.optional("known_speaker_references")
            references = refs.elements() if refs is not None else []
        except (v2wire.WireError, ValueError) as exc:
            raise BadRequest(f"ASR backend: {exc}", code="malformed_request") from exc
        return self.speech_engine.job(request.parameters, audio, references)

    def run(self, job: TranscribeJob, cancel: threading.Event) -> list[v2wire.BinaryOutput]:
        result = json.dumps(self.speech_engine.run(job, None, cancel), separators=(",", ":")).encode()
        return [
            v2wire.BinaryOutput(
                "result",
                "BYTES",
                [1],
                v2wire.element_prefix(len(result)) + result,
                {"content_type": "application/json"},
            )
        ]

    def produce(self, job: TranscribeJob, emit: Emit, cancel: threading.Event) -> None:
        """``text`` events (with ``logprobs`` when asked) per decoded batch or segment, then ``result``."""

        def on_text(text: str, logprobs: list[dict] | None) -> None:
            emit(_event("text", text=text, **({} if logprobs is None else {"logprobs": logprobs})))

        emit(_event("result", result=self.speech_engine.run(job, on_text, cancel)))

    def stream_body(self, first: bytes, items: AsyncIterator[bytes]) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield first
            try:
                with self.mapped_errors():
                    async for event in items:
                        yield event
            except ServiceError as exc:  # after the 200 only an in-band error is possible
                yield _event("error", message=exc.message, code=exc.code, status=exc.status)
            except Exception:
                log.exception("transcription failed after the stream started")
                yield _event(
                    "error", message="ASR backend failed while transcribing", code="backend_failed", status=500
                )

        return StreamingResponse(body(), media_type="application/x-ndjson")
