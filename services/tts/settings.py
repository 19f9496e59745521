"""TTS predictor configuration: every field is a ``TTS_*`` environment variable and a Helm value.

Coqui's own cache location is ``TTS_HOME`` (read by Coqui itself, not by this class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.predictor_settings import PredictorSettings


class TtsSettings(PredictorSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", extra="ignore")

    model_name: str = Field("tts", description="KServe model name (/v2/models/<name>/infer).")
    model: str = Field(
        "tts_models/multilingual/multi-dataset/xtts_v2",
        description="Coqui model name (downloaded into TTS_HOME) or a local model directory.",
    )
    public_models: list[str] = Field(
        ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "coqui-tts"],
        description="Public speech model ids, all served by TTS_MODEL; the gateway lists and accepts these "
        "(gpt-4o-mini-tts: the default of newer OpenAI clients).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    language: str = Field("en", description="Language passed to multilingual models (OpenAI's API has none).")
    default_speaker_wav: Path | None = Field(
        None,
        description="Reference recording for models that need one (XTTS); default <Coqui cache>/default-speaker.flac.",
    )
    default_speaker_url: str | None = Field(
        "https://huggingface.co/coqui/XTTS-v2/resolve/main/samples/en_sample.wav",
        description="Where the default reference is fetched once if the file is missing (empty: never).",
    )
    voices: dict[str, Path] = Field(
        {}, description="Voice name -> reference recording (e.g. on the model-cache volume)."
    )
    voice_dir: Path | None = Field(
        None, description="Where conditioning latents of operator voices are cached; default <Coqui cache>/voices."
    )
    voice_store: Path | None = Field(
        None,
        description="Where voices uploaded through the API live (sample, latents, metadata; one directory "
        "each); default <Coqui cache>/voice-store, on the model-cache volume in the chart.",
    )
    max_voices: int = Field(
        20, ge=0, le=10_000, description="Uploaded voices kept at most per owner (OpenAI: 20); 0 turns uploads off."
    )
    speaker_latents_cached: int = Field(
        32,
        ge=1,
        le=1024,
        description="Conditioning latents of live speakers' references (realtime translation in the "
        "speaker's voice) kept in memory.",
    )
    max_sample_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest voice sample upload (OpenAI: 10 MiB; 413 above)."
    )
    min_sample_seconds: float = Field(
        3.0, ge=0.5, le=60, description="Least speech in a voice sample (after trimming leading and trailing silence)."
    )
    max_sample_seconds: float = Field(30.0, ge=1, le=300, description="Most speech in a voice sample (OpenAI: 30 s).")
    require_consent: bool = Field(
        False,
        description="Whether a voice upload must name a consent recording of the uploader's, made through "
        "POST /v1/audio/voice_consents (without it, a given 'consent' is recorded as sent).",
    )
    shared_voices: list[str] = Field(
        [],
        description="Uploaded voice ids every API key may list and speak with (their owner alone deletes them); "
        "the rest belong to the key (owner) that uploaded them.",
    )
    stream_chunk_size: int = Field(
        20, ge=1, le=400, description="XTTS GPT tokens per streamed chunk (smaller: earlier first audio)."
    )
    max_piece_chars: int = Field(
        300,
        ge=20,
        le=4096,
        description="Longest piece of text synthesised in one call by models other than "
        "XTTS (which has its own limits): bounds memory for long sentences.",
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
