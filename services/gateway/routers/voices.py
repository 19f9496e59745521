from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile

from services.common.asgi import annotate
from services.gateway.openapi import ERROR_RESPONSES
from services.gateway.protocol.voices import (
    AudioModelList,
    Voice,
    VoiceConsent,
    VoiceConsentCreateRequest,
    VoiceConsentDeleted,
    VoiceConsentList,
    VoiceConsentUpdateRequest,
    VoiceCreateRequest,
    VoiceDeleted,
    VoiceList,
)
from services.gateway.transcription import check_upload
from services.gateway.voices import (
    audio_models,
    create_consent,
    create_voice,
    delete_consent,
    delete_voice,
    get_consent,
    list_consents,
    list_voices,
    rename_consent,
)

router = APIRouter(prefix="/v1/audio", tags=["voices"], responses=ERROR_RESPONSES)


@router.get("/voices")
async def get_voices(request: Request) -> VoiceList:
    """Every voice `voice` can name: the model's speakers, operator voices, uploaded voices, and OpenAI's
    names with what they fall back to. Open without an API key unless GATEWAY_VOICES_NEED_KEY is set."""
    return await list_voices(request.app.state.tts)


@router.post("/voices", response_model_exclude_none=True)
async def post_voice(
    request: Request, audio_sample: Annotated[UploadFile, File()], form: Annotated[VoiceCreateRequest, Form()]
) -> Voice:
    """Clone a voice from 3-30 s of speech (any format FFmpeg decodes); use its `voice_...` id as `voice`."""
    annotate(request.scope, model="voices")
    size = check_upload(audio_sample, request.app.state.settings, param="audio_sample")
    return await create_voice(request.app.state.tts, form, audio_sample, size)


@router.delete("/voices/{voice_id}")
async def remove_voice(voice_id: str, request: Request) -> VoiceDeleted:
    """Delete an uploaded voice (404 when there is none; the server's own voices cannot be deleted)."""
    return await delete_voice(request.app.state.tts, voice_id)


@router.get("/models")
async def get_audio_models(request: Request) -> AudioModelList:
    """The speech models, in the shape Open WebUI reads (`models`) and OpenAI's (`data`)."""
    return audio_models(await request.app.state.catalog.ids("speech") or [])


@router.post("/voice_consents")
async def post_consent(
    request: Request, recording: Annotated[UploadFile, File()], form: Annotated[VoiceConsentCreateRequest, Form()]
) -> VoiceConsent:
    """Record the speaker's consent (their recording, a name and its language) for voices uploaded with
    its id as `consent`; it belongs to the caller's key (its owner)."""
    size = check_upload(recording, request.app.state.settings, param="recording")
    return await create_consent(request.app.state.tts, form, recording, size)


@router.get("/voice_consents")
async def get_consents(request: Request, after: str | None = None, limit: int = 20) -> VoiceConsentList:
    """The caller's consent recordings, oldest first (`after`: the last id of the previous page)."""
    return await list_consents(request.app.state.tts, after, limit)


@router.get("/voice_consents/{consent_id}")
async def read_consent(consent_id: str, request: Request) -> VoiceConsent:
    return await get_consent(request.app.state.tts, consent_id)


@router.post("/voice_consents/{consent_id}")
async def update_consent(consent_id: str, body: VoiceConsentUpdateRequest, request: Request) -> VoiceConsent:
    """Rename a consent recording (metadata only)."""
    return await rename_consent(request.app.state.tts, consent_id, body.name)


@router.delete("/voice_consents/{consent_id}")
async def remove_consent(consent_id: str, request: Request) -> VoiceConsentDeleted:
    return await delete_consent(request.app.state.tts, consent_id)
