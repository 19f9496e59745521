"""The voice library without HTTP: every voice listed in one answer, uploads forwarded to the TTS
predictor (which checks the sample, computes the conditioning latents and stores the voice), deletes.
The predictor decides every rule; this module only shapes OpenAI's objects."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import UploadFile
from pydantic import ValidationError

from services.common.errors import echo
from services.gateway.backends import Backend, Blob, new_request, request_body
from services.gateway.errors import BadRequest, NotFound
from services.gateway.protocol.voices import (
    AudioModel,
    AudioModelList,
    Voice,
    VoiceCreateRequest,
    VoiceDeleted,
    VoiceEntry,
    VoiceList,
)

VOICE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. ")


async def list_voices(backend: Backend) -> VoiceList:
    doc = await backend.get_json("/voices")
    try:
        entries = [VoiceEntry.model_validate(e) for e in doc["data"]]
    except (KeyError, TypeError, ValidationError) as exc:
        raise backend.malformed(exc) from exc
    return VoiceList(data=entries, voices=entries)


def audio_models(ids: list[str]) -> AudioModelList:
    models = [AudioModel(id=i) for i in ids]
    return AudioModelList(data=models, models=models)


async def create_voice(backend: Backend, form: VoiceCreateRequest, sample: UploadFile, size: int) -> Voice:
    if form.type == "prompt":
        raise BadRequest(
            "voices from a text prompt are not supported: upload an audio_sample to clone",
            param="type",
            code="unsupported_value",
        )

    header = new_request({"name": form.name, "consent": form.consent, "language": form.language})
    body, headers = request_body(header, [Blob.upload("audio_sample", sample, size)])
    stored = await backend.json("POST", "/voices", body, headers)
    try:
        return Voice(
            id=stored["id"],
            created_at=stored["created_at"],
            name=stored["name"],
            object="audio.voice",
            type="audio_sample",
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise backend.malformed(exc) from exc


async def delete_voice(backend: Backend, voice_id: str) -> VoiceDeleted:
    if not voice_id or len(voice_id) > 128 or not set(voice_id) <= VOICE_ID_CHARS:
        raise BadRequest(f"invalid voice id '{echo(voice_id)}'", param="voice_id", code="invalid_value")
    if voice_id.strip(".") == "":  # "." and ".." would name another route once the URL is normalised
        raise NotFound(f"No voice with id '{echo(voice_id)}'", param="voice_id", code="voice_not_found")
    done = await backend.json("DELETE", f"/voices/{quote(voice_id, safe='')}")
    return VoiceDeleted(id=str(done.get("id", voice_id)), deleted=True, object="audio.voice.deleted")
