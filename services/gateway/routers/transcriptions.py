from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from services.common.asgi import annotate
from services.gateway import sse
from services.gateway.openapi import ERROR_RESPONSES
from services.gateway.protocol.transcriptions import TranscriptionRequest, TranslationRequest
from services.gateway.transcription import (
    check_model,
    check_transcription,
    check_upload,
    render_transcription,
    render_translation,
    run_asr,
    stream_transcription,
    transcription_parameters,
    translation_parameters,
)

router = APIRouter(prefix="/v1/audio", tags=["audio"], responses=ERROR_RESPONSES)


def _respond(body: str | dict) -> Response:
    if isinstance(body, str):
        return PlainTextResponse(body, media_type="text/plain; charset=utf-8")
    return JSONResponse(body)


@router.post("/transcriptions")
async def create_transcription(
    request: Request, file: Annotated[UploadFile, File()], form: Annotated[TranscriptionRequest, Form()]
) -> Response:
    """OpenAI's transcription, plus WhisperX's `advanced` (aligned words), `diarize` and speaker bounds."""
    annotate(request.scope, model=form.model, response_format=form.response_format, stream=form.stream)
    settings, state = request.app.state.settings, request.app.state
    await check_model(state.catalog, form.model)
    references = check_transcription(form)
    size = check_upload(file, settings)
    await state.tenancy.audio_admission(request.scope)

    def done(result: dict) -> None:
        state.tenancy.charge_audio_soon(request.scope, float(result.get("duration", 0.0)))

    if form.stream:
        events = await stream_transcription(state.asr, file, size, form, references=references, on_result=done)
        return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)
    result = await run_asr(state.asr, file, size, transcription_parameters(form), references)
    await state.tenancy.charge_audio(request.scope, float(result.get("duration", 0.0)))
    return _respond(render_transcription(result, form))


@router.post("/translations")
async def create_translation(
    request: Request, file: Annotated[UploadFile, File()], form: Annotated[TranslationRequest, Form()]
) -> Response:
    """Speech in any language -> English text."""
    annotate(request.scope, model=form.model, response_format=form.response_format)
    settings, state = request.app.state.settings, request.app.state
    await check_model(state.catalog, form.model)
    size = check_upload(file, settings)
    await state.tenancy.audio_admission(request.scope)
    result = await run_asr(state.asr, file, size, translation_parameters(form))
    await state.tenancy.charge_audio(request.scope, float(result.get("duration", 0.0)))
    return _respond(render_translation(result, form))
