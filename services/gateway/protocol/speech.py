"""Wire schema for /v1/audio/speech, named like OpenAI's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceId(BaseModel):
    """OpenAI's custom-voice object, ``{"id": "voice_123"}``."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: str = Field(min_length=1, max_length=4096)
    voice: str | VoiceId
    instructions: str | None = Field(
        None,
        max_length=4096,
        description="Accepted for compatibility; Coqui models have no instruction input and ignore it.",
    )
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream: bool | None = Field(
        None,
        description="Seed field. true: send audio chunk by chunk as it is made; false: the whole file. "
        "Omitted: mp3, opus, aac and pcm stream, wav and flac come whole with exact headers.",
    )
    stream_format: Literal["audio", "sse"] = "audio"
    word_timestamps: bool = Field(
        False,
        description="Extension (vLLM-Omni's name): time each word of the input in the audio (the ASR predictor "
        "aligns them). Whole responses become JSON {audio (base64), response_format, duration, words: [{word, "
        "start, end}]}; with stream_format=sse each speech.audio.delta carries its sentence's words. Seconds.",
    )

    @property
    def voice_name(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id
