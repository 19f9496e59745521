"""Gateway configuration: every field is a ``GATEWAY_*`` environment variable and a Helm value."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.logs import LogFormat

SPEECH_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the gateway binds.")
    port: int = Field(5148, ge=1, le=65535)
    asr_url: str = Field("http://127.0.0.1:8081", description="ASR predictor base URL.")
    tts_url: str = Field("http://127.0.0.1:8082", description="TTS predictor base URL.")
    asr_model_name: str = Field("asr", description="KServe model name of the ASR predictor.")
    tts_model_name: str = Field("tts", description="KServe model name of the TTS predictor.")
    asr_token: SecretStr | None = Field(None, description="Bearer token the ASR predictor requires (ASR_AUTH_TOKEN).")
    tts_token: SecretStr | None = Field(None, description="Bearer token the TTS predictor requires (TTS_AUTH_TOKEN).")
    asr_replicas_url: str | None = Field(
        None,
        description="A URL whose host name resolves to every ASR predictor replica (a headless Service; the "
        "chart sets it): requests go to the least loaded one. Unset: asr_url only.",
    )
    tts_replicas_url: str | None = Field(None, description="The same for the TTS predictor.")
    replica_refresh_seconds: float = Field(
        2.0, gt=0, le=60, description="How often the replicas are looked up and idle ones asked for their load."
    )
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a backend.")
    read_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds to wait for a backend's answer; the backend's work is cancelled when it runs out.",
    )
    max_connections: int = Field(64, ge=1, description="Pooled connections per backend.")
    keepalive_expiry: float = Field(
        30.0, gt=0, description="Seconds an idle pooled connection is kept (shorter than the predictors' keep-alive)."
    )
    retry_after_seconds: int = Field(5, ge=1, le=60, description="Retry-After sent with a retryable 503.")
    api_keys: list[SecretStr] = Field(
        [], description="Accepted Bearer keys (JSON list; named key-1, key-2, ... by position, no limits)."
    )
    api_keys_file: Path | None = Field(
        None,
        description="A JSON file of named keys with limits (tenants.keys), read again when it changes; "
        "with it or api_keys set, /v1 needs a key (a file that cannot be read refuses everyone).",
    )
    quota_redis_url: str | None = Field(
        None,
        description="Redis for per-key limits shared by every gateway replica (redis://host:6379/0); "
        "unset: limits are counted per process.",
    )
    quota_redis_password: SecretStr | None = Field(None, description="Redis password (from a Secret).")
    quota_store_timeout: float = Field(0.5, gt=0, description="Seconds a quota store call may take.")
    quota_store_failure: Literal["open", "closed"] = Field(
        "open",
        description="When the quota store fails: open admits (uncounted), closed answers 503; "
        "counted in speech_gateway_quota_store_errors_total and logged.",
    )
    metrics_need_key: bool = Field(False, description="Whether GET /metrics needs an API key (when keys are set).")
    voices_need_key: bool = Field(
        False,
        description="Whether GET /v1/audio/voices and GET /v1/audio/models need an API key (when keys are "
        "set). Open WebUI asks for both without one and otherwise shows OpenAI's six voices.",
    )
    max_upload_bytes: int = Field(26214400, ge=1, description="Largest accepted audio file (OpenAI: 25 MiB).")
    max_form_overhead_bytes: int = Field(
        4 * 1024 * 1024,
        ge=0,
        description="Multipart bytes allowed beyond the file (fields, known-speaker "
        "references): the whole body is refused (413) above the sum.",
    )
    max_json_bytes: int = Field(256 * 1024, ge=1024, description="Largest JSON request body (413 above).")
    models_ttl_seconds: float = Field(30.0, ge=0, description="How long the predictors' model lists are cached.")
    speech_sample_rate: int = Field(
        24000,
        description="Sample rate of generated audio (OpenAI: 24 kHz); one every format encodes (Opus takes "
        "only 8, 12, 16, 24 and 48 kHz).",
    )
    shutdown_grace_seconds: float = Field(
        120.0, ge=0, description="On SIGTERM, how long requests in flight may finish (new ones get 503)."
    )
    realtime_max_sessions: int = Field(
        64,
        ge=0,
        le=100_000,
        description="Realtime WebSocket sessions at once (beyond: refused with 429); 0 turns /v1/realtime off.",
    )
    realtime_idle_seconds: float = Field(
        300.0, gt=0, description="A realtime session with no client event for this long is closed."
    )
    realtime_max_session_seconds: float = Field(3600.0, gt=0, description="Longest realtime session (OpenAI: 60 min).")
    realtime_delay: Literal["minimal", "low", "medium", "high", "xhigh"] = Field(
        "low",
        description="Realtime sessions' default delay (OpenAI's audio.input.transcription.delay): how long the "
        "open turn is re-decoded after (minimal 0.5 s, low 1 s, medium 1.5 s, high 2.5 s) for partial text; "
        "xhigh: no partial text.",
    )
    realtime_max_event_bytes: int = Field(
        4 * 1024 * 1024,
        ge=65536,
        description="Largest WebSocket message (OpenAI takes 15 MiB; 4 MiB, 87 s of 24 kHz audio per append, keeps "
        "the default session count within the chart's gateway memory; clients send 20-100 ms appends).",
    )
    speech_stream_max_sessions: int = Field(
        64,
        ge=0,
        le=100_000,
        description="Speech stream WebSocket sessions at once (WS /v1/audio/speech/stream; beyond: refused with 429); "
        "0 turns the route off.",
    )
    speech_stream_max_buffer_chars: int = Field(
        65536,
        ge=4096,
        description="Text a speech stream session holds not yet spoken (beyond: an error event, the piece dropped).",
    )
    speech_stream_idle_seconds: float = Field(
        30.0, gt=0, description="A speech stream session with no message for this long (while idle) is closed."
    )
    speech_stream_config_seconds: float = Field(
        10.0, gt=0, description="How long a new speech stream session may take to send its session.config."
    )
    translation_max_sessions: int = Field(
        16,
        ge=0,
        le=100_000,
        description="Realtime translation sessions at once (WS /v1/realtime/translations; beyond: refused with "
        "429); 0 turns the route off.",
    )
    translation_models: list[str] = Field(
        ["gpt-realtime-translate"],
        description="Model names a translation session may be opened with besides the transcription models; "
        "they are served by the first transcription model.",
    )
    translation_language: str = Field(
        "en", pattern=r"^[a-z]{2,3}$", description="Translation sessions' default output language."
    )
    translation_voice: str = Field(
        "speaker",
        description="The voice translated speech is spoken in: 'speaker' (the speaker's own, cloned from the "
        "session's first seconds of speech; XTTS), or a voice name; a session may choose with "
        "session.audio.output.voice.",
    )
    translation_voice_seconds: float = Field(
        10.0,
        ge=2.0,
        le=20.0,
        description="Speech of the session's speaker the cloned voice is conditioned on (refreshed as it arrives).",
    )
    translation_speech_model: str | None = Field(
        None, description="The speech model translation sessions speak with; default: the first one served."
    )
    word_timings_model: str = Field(
        "whisper-1",
        description="The transcription model whose ASR predictor times the words of synthesised speech "
        "(word_timestamps); it aligns with ASR_WORD_TIMESTAMPS' method.",
    )
    playground: bool = Field(
        True, description="Serve the playground page at /playground (it calls the API with the key typed into it)."
    )

    @field_validator("speech_sample_rate")
    @classmethod
    def _every_format_encodes(cls, rate: int) -> int:
        if rate not in SPEECH_SAMPLE_RATES:
            raise ValueError(f"must be one of {SPEECH_SAMPLE_RATES} (rates every format, Opus included, encodes)")
        return rate

    log_format: LogFormat = Field("text", description="'text' or 'json' (one object per line).")
