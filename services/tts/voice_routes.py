"""The TTS predictor's voice library routes, behind the gateway's ``/v1/audio/voices``:
``GET /voices``, ``POST /voices`` (a v2 request: the sample as one BYTES input, the fields as
parameters), ``DELETE /voices/{voice_id}``. Uploads take a place in the admission queue like
inference: they run the model."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import FastAPI, Request, Response

from services.common import v2wire
from services.common.errors import BadRequest
from services.common.predictor import LazyPredictor
from services.common.predictor_routes import admitted, read_v2
from services.common.work import ClientGone
from services.tts.engine import TtsEngine
from services.tts.voice_library import VoiceUpload

BODY_OVERHEAD = 64 * 1024  # the v2 header and fields around the sample


def add_voice_routes(app: FastAPI, predictor: LazyPredictor, engine: TtsEngine) -> None:
    @app.get("/voices", include_in_schema=False)
    async def list_voices() -> dict:
        with predictor.mapped_errors():
            return {"object": "list", "data": await asyncio.to_thread(engine.list_voices)}

    @app.post("/voices", include_in_schema=False, response_model=None)
    async def create_voice(request: Request) -> Response | dict:
        async def prepare() -> VoiceUpload:
            payload = await read_v2(request, predictor.label)
            try:
                (sample,) = payload.tensor("audio_sample").elements()
            except (v2wire.WireError, ValueError) as exc:
                raise BadRequest(
                    "TTS backend: input 'audio_sample' must be one BYTES element",
                    param="audio_sample",
                    code="malformed_request",
                ) from exc
            return engine.voices.upload(payload.parameters, sample)

        try:
            voice = await admitted(request, predictor, prepare, engine.create_voice)
        except ClientGone:
            predictor.metrics.cancelled.labels("voices").inc()
            return Response(status_code=499)
        return asdict(voice)

    @app.delete("/voices/{voice_id}", include_in_schema=False)
    async def delete_voice(voice_id: str) -> dict:
        voice = await asyncio.to_thread(engine.delete_voice, voice_id)
        return {"id": voice.id, "deleted": True}
