"""ASR predictor configuration: every field is an ``ASR_*`` environment variable and a Helm value."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.predictor_settings import PredictorSettings


class AsrSettings(PredictorSettings):
    model_config = SettingsConfigDict(env_prefix="ASR_", extra="ignore")

    model_name: str = Field("asr", description="KServe model name (/v2/models/<name>/infer).")
    models: dict[str, str] = Field(
        {"whisper-1": "large-v3", "turbo": "large-v3-turbo"},
        description="Public model id -> WhisperX model (a size name, a hub id or a local directory). "
        "The keys are the transcription models the gateway lists and accepts.",
    )
    model_aliases: dict[str, str] = Field(
        {
            "gpt-4o-transcribe": "whisper-1",
            "gpt-4o-mini-transcribe": "whisper-1",
            "gpt-transcribe": "whisper-1",
            "gpt-live-transcribe": "whisper-1",
            "gpt-realtime-whisper": "whisper-1",
        },
        description="Further public model ids, each served by the model of a key of ASR_MODELS: the names "
        "newer OpenAI clients default to. An alias of an id that is not served is left out.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str | None = Field(None, description="CTranslate2 compute type; default float16 on GPU, int8 on CPU.")
    batch_size: int = Field(
        8,
        ge=1,
        le=256,
        description="Segments decoded per CTranslate2 call (one request's "
        "segments, or several requests' with batching).",
    )
    cross_request_batching: bool = Field(
        True,
        description="Share CTranslate2 calls between the segments of concurrent requests on one model "
        "(needs max_active > 1); false: each request decodes alone under the model's lock.",
    )
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long a dispatch waits for more segments "
        "when the batch is not full (0: never; the "
        "batcher is work-conserving).",
    )
    batch_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Largest share of one batch one request may take (a long file cannot starve short ones).",
    )
    max_active: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests worked on at once: their audio decoding, VAD and features overlap, "
        "and with cross-request batching their segments share decodes.",
    )
    live_max_sessions: int = Field(
        16,
        ge=0,
        le=1000,
        description="Live (realtime) sessions this predictor serves at once; beyond: 429 at the "
        "handshake, and the gateway tries another replica.",
    )
    live_max_buffer_seconds: float = Field(
        300.0, gt=0, le=7200, description="Audio a live session holds at most (a turn that long is cut there)."
    )
    live_max_items: int = Field(
        4, ge=1, le=64, description="Items of a live session being transcribed at once; beyond, an item fails."
    )
    translation_model: str = Field(
        "facebook/m2m100_418M",
        description="Text translation model for realtime translation into languages other than English "
        "(hub id or local dir; an M2M100 tokenizer); loaded on the first session that asks for one.",
    )
    translation_model_dir: str | None = Field(None, description="Cache for the text translation model.")
    translation_max_new_tokens: int = Field(
        256, ge=8, le=1024, description="Tokens a translated turn may have at most."
    )
    vad_method: Literal["pyannote", "silero"] = Field(
        "pyannote", description="pyannote uses the model bundled with WhisperX (works offline); silero downloads."
    )
    download_root: str | None = Field(None, description="Whisper model cache; default: the Hugging Face cache.")
    temperature_fallback: bool = Field(
        True,
        description="With temperature 0, re-decode a segment that looks failed (too repetitive or too "
        "unlikely) at rising temperatures, as OpenAI does; false: plain greedy/beam search.",
    )
    max_audio_seconds: float = Field(7200.0, gt=0, description="Longest decoded audio accepted (400 above).")
    max_aligners: int = Field(
        4,
        ge=1,
        le=100,
        description="Alignment models (one per language) kept at most; the least recently used goes first.",
    )
    word_timestamps: Literal["alignment", "whisper"] = Field(
        "alignment",
        description="alignment: WhisperX wav2vec2 forced alignment (per-language model); "
        "whisper: Whisper's own cross-attention times (no extra model).",
    )
    align_models: dict[str, str] = Field(
        {}, description="Language -> alignment model (hub id or local dir); unset languages use WhisperX's default."
    )
    align_model_dir: str | None = Field(None, description="Cache for alignment models.")
    diarization_model: str = Field(
        "pyannote/speaker-diarization-community-1",
        description="pyannote pipeline (hub id, needs HF_TOKEN, or local dir).",
    )
    known_speaker_min_similarity: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a diarized speaker needs to a known speaker's reference to take its name.",
    )
    silence_threshold: float = Field(
        1e-3, ge=0.0, le=1.0, description="Peak amplitude below which an upload counts as silent (400)."
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ASR_HF_TOKEN", "HF_TOKEN"),
        description="Hugging Face token (gated pyannote models).",
    )
