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
    model: str = Field("tts_models/multilingual/multi-dataset/xtts_v2",
                       description="Coqui model name (downloaded into TTS_HOME) or a local model directory.")
    public_models: list[str] = Field(
        ["tts-1", "tts-1-hd", "coqui-tts"],
        description="Public speech model ids, all served by TTS_MODEL; the gateway lists and accepts these.")
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
    voice_dir: Path | None = Field(
        None, description="Where conditioning latents are cached; default <Coqui cache>/voices.")
    stream_chunk_size: int = Field(20, ge=1, le=400,
                                   description="XTTS GPT tokens per streamed chunk (smaller: earlier first audio).")
    max_piece_chars: int = Field(
        300, ge=20, le=4096, description="Longest piece of text synthesised in one call by models other than "
                                         "XTTS (which has its own limits): bounds memory for long sentences.")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
