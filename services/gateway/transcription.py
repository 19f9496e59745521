"""Transcription work without HTTP: ask the ASR backend, render the requested response format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import UploadFile
from openai.types.audio import Transcription, TranscriptionVerbose, Translation, TranslationVerbose

from services.gateway.backends import Backend, new_request
from services.gateway.errors import BackendFailed, InvalidRequest, PayloadTooLarge
from services.gateway.formats import to_srt, to_vtt
from services.gateway.settings import GatewaySettings

CHUNK = 1 << 16


def check_model(model: str, settings: GatewaySettings) -> None:
    if model not in settings.transcription_models:
        raise InvalidRequest(f"The model '{model}' does not exist or is not a transcription model; "
                             f"use one of {settings.transcription_models}", param="model", code="model_not_found")


def check_upload(file: UploadFile, settings: GatewaySettings) -> int:
    size = file.size or 0
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(f"Maximum content size limit ({settings.max_upload_bytes}) exceeded "
                              f"({size} bytes read)", param="file")
    if size == 0:
        raise InvalidRequest("The audio file is empty.", param="file", code="empty_file")
    return size


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    await file.seek(0)
    while chunk := await file.read(CHUNK):
        yield chunk


async def run_asr(backend: Backend, file: UploadFile, size: int, parameters: dict) -> dict:
    output = await backend.infer_with_blob(new_request(parameters), _chunks(file), size, "result")
    try:
        return json.loads(output.single_bytes())
    except ValueError as exc:
        raise BackendFailed(f"ASR backend returned a malformed result: {exc}") from exc


def render(result: dict, response_format: str, translation: bool = False) -> str | dict:
    segments = result["segments"]
    if response_format == "text":
        return result["text"] + "\n"
    if response_format == "srt":
        return to_srt(segments)
    if response_format == "vtt":
        return to_vtt(segments)
    if response_format == "verbose_json":
        return verbose(result, translation)
    usage = {"type": "duration", "seconds": result["duration"]}
    if translation:
        return Translation(text=result["text"]).model_dump()
    return Transcription(text=result["text"], usage=usage).model_dump(exclude_none=True)


def verbose(result: dict, translation: bool) -> dict:
    common = {"duration": result["duration"], "text": result["text"], "segments": result["segments"]}
    if translation:
        return TranslationVerbose(language="english", **common).model_dump(exclude_none=True)
    body = TranscriptionVerbose(language=result["language_name"], usage={"type": "duration", "seconds": result["duration"]},
                                **common)
    return {"task": "transcribe", **body.model_dump(exclude_none=True)}
