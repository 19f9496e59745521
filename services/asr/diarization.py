"""Speaker diarization with a pyannote pipeline through WhisperX, speakers assigned to segments and words."""

from __future__ import annotations

import numpy as np


def load_diarizer(model_name: str, device: str, token: str | None, cache_dir: str | None):
    from whisperx.diarize import DiarizationPipeline

    return DiarizationPipeline(model_name=model_name, token=token, device=device, cache_dir=cache_dir)


def diarize(diarizer, segments: list[dict], audio: np.ndarray, min_speakers: int | None,
            max_speakers: int | None) -> None:
    """Label segments (and their words) with ``speaker`` in place."""
    from whisperx.diarize import assign_word_speakers

    turns = diarizer(audio, min_speakers=min_speakers, max_speakers=max_speakers)
    assign_word_speakers(turns, {"segments": segments}, fill_nearest=True)
