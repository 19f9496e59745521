"""Wire schemas for /v1/audio/voices and /v1/audio/models. Uploads answer the official SDK's
``Voice`` (and deletes its ``VoiceDeleted``) so the JSON cannot drift; the list has no OpenAI type:
it carries OpenAI's list convention (``object``, ``data``) and Open WebUI's ``voices`` together."""

from __future__ import annotations

from typing import Literal

from openai.types.audio import Voice, VoiceConsent, VoiceConsentDeleted, VoiceDeleted
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AudioModelList",
    "Voice",
    "VoiceConsent",
    "VoiceConsentCreateRequest",
    "VoiceConsentDeleted",
    "VoiceConsentList",
    "VoiceConsentUpdateRequest",
    "VoiceCreateRequest",
    "VoiceDeleted",
    "VoiceEntry",
    "VoiceList",
]


class VoiceCreateRequest(BaseModel):
    """The multipart fields besides ``audio_sample``: OpenAI's, then ``language`` (XTTS's hint)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Unique name: 1-64 letters, digits, spaces, '_', '.' or '-'.")
    consent: str | None = Field(
        None,
        description="OpenAI's consent recording id (POST /v1/audio/voice_consents); required, and checked to be "
        "the uploader's own record, when the server says so (TTS_REQUIRE_CONSENT).",
    )
    type: Literal["audio_sample", "prompt"] = "audio_sample"
    prompt: str | None = Field(None, description="For type=prompt, which speech-stack does not support.")
    language: str | None = Field(
        None,
        description="The sample's language (an XTTS language code); the voice "
        "speaks it unless a request says otherwise.",
    )


class VoiceEntry(BaseModel):
    id: str = Field(description="What a speech request passes as `voice` (a name, or a voice_... id).")
    name: str
    object: Literal["audio.voice"] = "audio.voice"
    type: Literal["builtin", "operator", "audio_sample", "alias"] = Field(
        description="builtin: the model's speaker; operator: a recording configured by the operator; "
        "audio_sample: uploaded through this API; alias: an OpenAI name that falls back to `maps_to`."
    )
    created_at: int | None = None
    language: str | None = None
    maps_to: str | None = None


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceEntry]
    voices: list[VoiceEntry] = Field(
        description="The same list, under the key Open WebUI and Kokoro-style clients read."
    )


class AudioModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "speech-stack"


class AudioModelList(BaseModel):
    """Speech models, under ``data`` and under ``models`` (what Open WebUI reads)."""

    object: Literal["list"] = "list"
    data: list[AudioModel]
    models: list[AudioModel]


class VoiceConsentCreateRequest(BaseModel):
    """The multipart fields besides ``recording``, as ``client.audio.voice_consents.create`` sends them."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=128, description="A label for the consent recording.")
    language: str = Field(min_length=2, max_length=35, description="The recording's language (BCP 47, e.g. en-US).")


class VoiceConsentUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)


class VoiceConsentList(BaseModel):
    """A page of the caller's consent recordings, as the SDK's cursor page reads it."""

    object: Literal["list"] = "list"
    data: list[VoiceConsent]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
