"""Speaker diarization with a pyannote pipeline through WhisperX, speakers assigned to segments and words."""

from __future__ import annotations

import numpy as np


def load_diarizer(model_name: str, device: str, token: str | None, cache_dir: str | None):
    from whisperx.diarize import DiarizationPipeline

    return DiarizationPipeline(model_name=model_name, token=token, device=device, cache_dir=cache_dir)


def diarize(diarizer, segments: list[dict], audio: np.ndarray, min_speakers: int | None,
            max_speakers: int | None, known: list[tuple[str, np.ndarray]] = (), min_similarity: float = 0.0) -> None:
    """Label segments (and their words) with ``speaker`` in place. With ``known`` (name, reference
    audio) pairs, a diarized speaker whose embedding matches a reference takes that name."""
    from whisperx.diarize import assign_word_speakers

    if not known:
        turns = diarizer(audio, min_speakers=min_speakers, max_speakers=max_speakers)
        assign_word_speakers(turns, {"segments": segments}, fill_nearest=True)
        return
    turns, centroids = diarizer(audio, min_speakers=min_speakers, max_speakers=max_speakers, return_embeddings=True)
    assign_word_speakers(turns, {"segments": segments}, fill_nearest=True)
    names = match_known_speakers(centroids or {}, reference_embeddings(diarizer, [ref for _, ref in known]),
                                 [name for name, _ in known], min_similarity)
    for item in [*segments, *(w for s in segments for w in s.get("words", []))]:
        if item.get("speaker") in names:
            item["speaker"] = names[item["speaker"]]


def reference_embeddings(diarizer, references: list[np.ndarray]) -> np.ndarray:
    """One embedding per reference recording, from the pipeline's own speaker-embedding model
    (pyannote keeps it as ``_embedding``; it is the model the centroids come from)."""
    import torch

    embed = diarizer.model._embedding
    return np.concatenate([embed(torch.from_numpy(ref[None, None, :])) for ref in references])


def match_known_speakers(centroids: dict[str, list[float]], references: np.ndarray, names: list[str],
                         min_similarity: float) -> dict[str, str]:
    """Pair diarized speakers with known names one to one (the assignment with the highest total
    cosine similarity); pairs below ``min_similarity`` stay unnamed."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    labels = [label for label, vector in centroids.items() if np.all(np.isfinite(vector))]
    if not labels:
        return {}
    similarity = 1.0 - cdist(np.array([centroids[label] for label in labels]), references, metric="cosine")
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return {labels[r]: names[c] for r, c in zip(rows, cols) if similarity[r, c] >= min_similarity}
