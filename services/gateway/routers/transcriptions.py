from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.gateway.protocol.transcriptions import TranscriptionRequest, TranslationRequest
from services.gateway.transcription import check_model, check_upload, render, run_asr

router = APIRouter(prefix="/v1/audio", tags=["audio"])


def _respond(body: str | dict) -> Response:
    if isinstance(body, str):
        return PlainTextResponse(body, media_type="text/plain; charset=utf-8")
    return JSONResponse(body)


@router.post("/transcriptions")
async def create_transcription(request: Request, file: Annotated[UploadFile, File()],
                               form: Annotated[TranscriptionRequest, Form()]) -> Response:
    settings = request.app.state.settings
    check_model(form.model, settings)
    size = check_upload(file, settings)
    params = {"model": form.model, "task": "transcribe", "language": form.language,
              "prompt": form.prompt, "temperature": form.temperature}
    result = await run_asr(request.app.state.asr, file, size, params)
    return _respond(render(result, form.response_format))


@router.post("/translations")
async def create_translation(request: Request, file: Annotated[UploadFile, File()],
                             form: Annotated[TranslationRequest, Form()]) -> Response:
    settings = request.app.state.settings
    check_model(form.model, settings)
    size = check_upload(file, settings)
    params = {"model": form.model, "task": "translate", "prompt": form.prompt, "temperature": form.temperature}
    result = await run_asr(request.app.state.asr, file, size, params)
    return _respond(render(result, form.response_format, translation=True))
