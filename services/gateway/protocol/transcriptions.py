"""Wire schemas for /v1/audio/transcriptions and /v1/audio/translations, named like OpenAI's."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]
TranslationFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]
Include = Literal["logprobs"]


class TranscriptionRequest(BaseModel):
    """The multipart fields besides ``file`` (OpenAI's, then the seed's WhisperX extras)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    model: str
    language: str | None = Field(None, description="ISO-639-1 code of the spoken language.")
    prompt: str | None = Field(None, description="Initial prompt (style, vocabulary).")
    response_format: TranscriptionFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Granularity] = Field(
        ["segment"],
        alias="timestamp_granularities[]",
        description="word and/or segment; needs response_format=verbose_json.",
    )
    include: list[Include] = Field(
        [],
        alias="include[]",
        description="logprobs: each token's log-probability (response_format=json; greedy decoding).",
    )
    stream: bool = False
    known_speaker_names: list[str] = Field(
        [],
        alias="known_speaker_names[]",
        max_length=4,
        description="Names for up to 4 known speakers, paired by index with known_speaker_references[].",
    )
    known_speaker_references: list[str] = Field(
        [],
        alias="known_speaker_references[]",
        max_length=4,
        description="Data URLs (data:audio/wav;base64,...) of 2-10 s of each known speaker.",
    )
    advanced: bool = Field(False, description="Add WhisperX alignment detail (word times and scores).")
    diarize: bool = Field(False, description="Label segments and words with speakers.")
    min_speakers: int | None = Field(None, ge=1)
    max_speakers: int | None = Field(None, ge=1)

    @property
    def wants_logprobs(self) -> bool:
        return "logprobs" in self.include


class TranslationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str | None = None
    response_format: TranslationFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
