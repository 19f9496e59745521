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
from services.common.owner import OWNER
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
            return engine.voices.upload(payload.parameters, sample, OWNER.get())

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

    add_consent_routes(app, predictor, engine)


def add_consent_routes(app: FastAPI, predictor: LazyPredictor, engine: TtsEngine) -> None:
    """``/consents``: the consent recordings behind ``/v1/audio/voice_consents`` (the caller's own)."""
    consents = engine.voices.consents

    @app.post("/consents", include_in_schema=False, response_model=None)
    async def create_consent(request: Request) -> Response | dict:
        payload = await read_v2(request, predictor.label)
        try:
            (recording,) = payload.tensor("recording").elements()
        except (v2wire.WireError, ValueError) as exc:
            raise BadRequest("TTS backend: input 'recording' must be one BYTES element", param="recording",
                             code="malformed_request") from exc  # fmt: skip
        consent = await asyncio.to_thread(engine.create_consent, payload.parameters, recording, None)
        return consent.public()

    @app.get("/consents", include_in_schema=False)
    async def list_consents(after: str | None = None, limit: int = 20) -> dict:
        if not 1 <= limit <= 100:
            raise BadRequest("limit must be between 1 and 100", param="limit", code="invalid_value")
        found = await asyncio.to_thread(consents.all, OWNER.get())
        if after is not None:
            found = [c for c in found if c.id > after]
        page = found[:limit]
        return {"object": "list", "data": [c.public() for c in page], "has_more": len(found) > limit,
                "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}  # fmt: skip

    @app.get("/consents/{consent_id}", include_in_schema=False)
    async def get_consent(consent_id: str) -> dict:
        return (await asyncio.to_thread(consents.get, consent_id, OWNER.get())).public()

    @app.post("/consents/{consent_id}", include_in_schema=False)
    async def rename_consent(consent_id: str, request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            body = None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise BadRequest("name must be 1-128 characters", param="name", code="invalid_value")
        return (await asyncio.to_thread(consents.rename, consent_id, name.strip(), OWNER.get())).public()

    @app.delete("/consents/{consent_id}", include_in_schema=False)
    async def delete_consent(consent_id: str) -> dict:
        consent = await asyncio.to_thread(consents.delete, consent_id, OWNER.get())
        return {"id": consent.id, "deleted": True, "object": "audio.voice_consent"}
