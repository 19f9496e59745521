from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from services.gateway import sse
from services.gateway.protocol.transcriptions import TranscriptionRequest, TranslationRequest
from services.gateway.transcription import (check_model, check_transcription, check_upload, render_transcription,
                                            render_translation, run_asr, stream_transcription,
                                            transcription_parameters, translation_parameters)

router = APIRouter(prefix="/v1/audio", tags=["audio"])


def _respond(body: str | dict) -> Response:
    if isinstance(body, str):
        return PlainTextResponse(body, media_type="text/plain; charset=utf-8")
    return JSONResponse(body)


@router.post("/transcriptions")
async def create_transcription(request: Request, file: Annotated[UploadFile, File()],
                               form: Annotated[TranscriptionRequest, Form()]) -> Response:
    """OpenAI's transcription, plus WhisperX's `advanced` (aligned words), `diarize` and speaker bounds."""
    settings = request.app.state.settings
    check_model(form.model, settings)
    check_transcription(form)
    size = check_upload(file, settings)
    if form.stream:
        events = await stream_transcription(request.app.state.asr, file, size, form)
        return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)
    result = await run_asr(request.app.state.asr, file, size, transcription_parameters(form))
    return _respond(render_transcription(result, form))


@router.post("/translations")
async def create_translation(request: Request, file: Annotated[UploadFile, File()],
                             form: Annotated[TranslationRequest, Form()]) -> Response:
    """Speech in any language -> English text."""
    settings = request.app.state.settings
    check_model(form.model, settings)
    size = check_upload(file, settings)
    result = await run_asr(request.app.state.asr, file, size, translation_parameters(form))
    return _respond(render_translation(result, form))
