"""A speech stream session's ``session.config``, as vLLM-Omni takes it: flat fields (SGLang-Omni's
nesting under ``session`` is read too), unknown ones ignored, sticky until the next config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.gateway.speech_stream.splitter import Granularity


class ConfigRefused(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = "tts-1"
    voice: str = Field("alloy", min_length=1, validation_alias=AliasChoices("voice", "speaker"))
    response_format: Literal["wav", "pcm", "flac", "mp3", "opus", "aac"] = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_audio: bool = False
    split_granularity: Granularity = "none"
    language: str | None = Field(None, max_length=16)
    instructions: str | None = Field(None, max_length=4096)  # accepted; Coqui models take no instructions
    word_timestamps: bool = False
    seed: int | None = None  # accepted; XTTS's sampling is not seeded per request

    @model_validator(mode="after")
    def _combinations(self) -> StreamConfig:
        if self.stream_audio and self.response_format != "pcm":
            raise ValueError(
                "WebSocket streaming audio (stream_audio=true) requires response_format='pcm'. "
                f"Got response_format='{self.response_format}'."
            )
        if self.word_timestamps and not self.stream_audio:
            raise ValueError(
                "word_timestamps=true requires stream_audio=true and response_format='pcm' "
                "(timestamps ride the per-sentence PCM audio.chunk stream)."
            )
        return self

    @classmethod
    def parse(cls, message: dict[str, Any]) -> StreamConfig:
        fields = {k: v for k, v in message.items() if k != "type"}
        nested = fields.pop("session", None)
        if isinstance(nested, dict):
            fields |= nested
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'session.config'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ConfigRefused(f"Invalid session config: {problems}") from None
