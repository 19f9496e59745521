"""WhisperX forced alignment (wav2vec2 per language): word start/end/score for decoded segments."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from services.asr.decoding import check
from services.asr.result import attach_words, fill_word_times


def load_aligner(language: str, device: str, model_name: str | None, model_dir: str | None) -> tuple[Any, Any]:
    import whisperx

    model, metadata = whisperx.load_align_model(
        language_code=language, device=device, model_name=model_name, model_dir=model_dir
    )
    return model, metadata


SEGMENTS_PER_STEP = 8  # aligned between two cancellation checks (WhisperX aligns each segment on its own)


def align(
    aligner: tuple[Any, Any],
    segments: list[dict],
    audio: np.ndarray,
    device: str,
    cancel: threading.Event | None = None,
) -> None:
    """Add ``words`` to every segment in place; the segments themselves are kept as decoded. A client
    that leaves stops it within a few segments."""
    import whisperx

    model, metadata = aligner
    plain = [{"start": s["start"], "end": s["end"], "text": s["text"]} for s in segments]
    words = []
    for first in range(0, len(plain), SEGMENTS_PER_STEP):
        check(cancel)
        step = plain[first : first + SEGMENTS_PER_STEP]
        aligned = whisperx.align(step, model, metadata, audio, device, return_char_alignments=False)
        words += [{k: w[k] for k in ("word", "start", "end", "score") if k in w} for w in aligned["word_segments"]]
    start, end = segments[0]["start"], segments[-1]["end"]
    attach_words(segments, fill_word_times(words, start, end))


def serves(language: str, configured: dict[str, str]) -> bool:
    """Whether an aligner is known for the language: configured, or one of WhisperX's defaults."""
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    return language in configured or language in DEFAULT_ALIGN_MODELS_TORCH or language in DEFAULT_ALIGN_MODELS_HF
