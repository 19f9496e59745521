"""The voice library without HTTP: every voice listed in one answer, uploads forwarded to the TTS
predictor (which checks the sample, computes the conditioning latents and stores the voice), deletes.
The predictor decides every rule; this module only shapes OpenAI's objects."""

from __future__ import annotations

import json
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
    VoiceConsent,
    VoiceConsentCreateRequest,
    VoiceConsentDeleted,
    VoiceConsentList,
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


# -- consent recordings ------------------------------------------------------------------------------
def _consent_path(consent_id: str) -> str:
    if not consent_id or len(consent_id) > 128 or not set(consent_id) <= VOICE_ID_CHARS or not consent_id.strip("."):
        raise NotFound(f"No voice consent with id '{echo(consent_id)}'", param="consent_id",
                       code="voice_consent_not_found")  # fmt: skip
    return f"/consents/{quote(consent_id, safe='')}"


def _consent(backend: Backend, doc: object) -> VoiceConsent:
    try:
        return VoiceConsent.model_validate(doc)
    except ValidationError as exc:
        raise backend.malformed(exc) from exc


async def create_consent(
    backend: Backend, form: VoiceConsentCreateRequest, recording: UploadFile, size: int
) -> VoiceConsent:
    header = new_request({"name": form.name, "language": form.language})
    body, headers = request_body(header, [Blob.upload("recording", recording, size)])
    return _consent(backend, await backend.json("POST", "/consents", body, headers))


async def list_consents(backend: Backend, after: str | None, limit: int) -> VoiceConsentList:
    if not 1 <= limit <= 100:
        raise BadRequest("limit must be between 1 and 100", param="limit", code="invalid_value")
    query = f"?limit={limit}" + (f"&after={quote(after, safe='')}" if after else "")
    doc = await backend.get_json(f"/consents{query}")
    try:
        return VoiceConsentList.model_validate(doc)
    except ValidationError as exc:
        raise backend.malformed(exc) from exc


async def get_consent(backend: Backend, consent_id: str) -> VoiceConsent:
    return _consent(backend, await backend.get_json(_consent_path(consent_id)))


async def rename_consent(backend: Backend, consent_id: str, name: str) -> VoiceConsent:
    body = json.dumps({"name": name}).encode()
    doc = await backend.json("POST", _consent_path(consent_id), lambda: body, {"content-type": "application/json"})
    return _consent(backend, doc)


async def delete_consent(backend: Backend, consent_id: str) -> VoiceConsentDeleted:
    done = await backend.json("DELETE", _consent_path(consent_id))
    return VoiceConsentDeleted(id=str(done.get("id", consent_id)), deleted=True, object="audio.voice_consent")
