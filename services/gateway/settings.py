"""Gateway configuration: every field is a ``GATEWAY_*`` environment variable and a Helm value."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the gateway binds.")
    port: int = Field(5148, ge=1, le=65535)
    asr_url: str = Field("http://127.0.0.1:8081", description="ASR predictor base URL.")
    tts_url: str = Field("http://127.0.0.1:8082", description="TTS predictor base URL.")
    asr_model_name: str = Field("asr", description="KServe model name of the ASR predictor.")
    tts_model_name: str = Field("tts", description="KServe model name of the TTS predictor.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to a backend.")
    read_timeout: float = Field(600.0, gt=0, description="Seconds to wait for a backend's answer.")
    max_connections: int = Field(64, ge=1, description="Pooled connections per backend.")
    retry_after_seconds: int = Field(5, ge=1, le=60, description="Retry-After sent with 503s.")
    api_keys: list[SecretStr] = Field([], description="Accepted Bearer keys (JSON list); empty: no auth.")
    max_upload_bytes: int = Field(26214400, ge=1, description="Largest accepted audio upload (OpenAI: 25 MiB).")
    transcription_models: list[str] = Field(["whisper-1", "turbo"], description="Public ASR model ids.")
    speech_models: list[str] = Field(["tts-1", "tts-1-hd", "coqui-tts"], description="Public TTS model ids.")
    speech_sample_rate: int = Field(24000, description="Sample rate of generated audio (OpenAI: 24 kHz).")
