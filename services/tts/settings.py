"""TTS predictor configuration: every field is a ``TTS_*`` environment variable and a Helm value.

Coqui's own cache location is ``TTS_HOME`` (read by Coqui itself, not by this class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.lifecycle import UnloadPolicy


class TtsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    http_port: int = Field(8080, ge=1, le=65535, description="KServe predictor port.")
    model_name: str = Field("tts", description="KServe model name (/v2/models/<name>/infer).")
    model: str = Field("tts_models/multilingual/multi-dataset/xtts_v2",
                       description="Coqui model name (downloaded into TTS_HOME) or a local model directory.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    language: str = Field("en", description="Language passed to multilingual models (OpenAI's API has none).")
    default_speaker_wav: Path | None = Field(
        None, description="Reference recording for models that need one (XTTS); default "
                          "<Coqui cache>/default-speaker.flac.")
    default_speaker_url: str | None = Field(
        "https://huggingface.co/coqui/XTTS-v2/resolve/main/samples/en_sample.wav",
        description="Where the default reference is fetched once if the file is missing (empty: never).")
    voices: dict[str, Path] = Field(
        {}, description="Voice name -> reference recording (e.g. on the model-cache volume).")
    voice_dir: Path | None = Field(None, description="Where conditioning latents are cached; default <Coqui cache>/voices.")
    stream_chunk_size: int = Field(20, ge=1, le=400,
                                   description="XTTS GPT tokens per streamed chunk (smaller: earlier first audio).")
    threads: int = Field(4, ge=1, le=256, description="torch CPU threads.")
    unload_policy: UnloadPolicy = Field(
        "after_request", description="'after_request', 'never', or idle seconds before unloading.")
    max_concurrency: int = Field(1, ge=1, le=64, description="Syntheses run at once; the rest queue.")
