"""Speaker diarization with a pyannote pipeline through WhisperX, speakers assigned to segments and words."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from services.asr.decoding import check


def load_diarizer(model_name: str, device: str, token: str | None, cache_dir: str | None) -> Any:
    from whisperx.diarize import DiarizationPipeline

    return DiarizationPipeline(model_name=model_name, token=token, device=device, cache_dir=cache_dir)


def diarize(
    diarizer: Any,
    segments: list[dict],
    audio: np.ndarray,
    *,
    min_speakers: int | None,
    max_speakers: int | None,
    known: list[tuple[str, np.ndarray]],
    min_similarity: float,
    cancel: threading.Event | None = None,
) -> None:
    """Label segments and their words with ``speaker`` in place, with the names clients see: a known
    speaker's name where its reference matches a diarized speaker, otherwise OpenAI's A, B, ...
    pyannote reports its progress batch by batch; a client that leaves stops it at the next batch."""
    from whisperx.diarize import assign_word_speakers

    def progress(_: float) -> None:
        check(cancel)

    names: dict[str, str] = {}
    if known:
        turns, centroids = diarizer(
            audio,
            min_speakers=min_speakers,
            max_speakers=max_speakers,
            return_embeddings=True,
            progress_callback=progress,
        )
        names = match_known_speakers(
            centroids or {},
            reference_embeddings(diarizer, [ref for _, ref in known]),
            [name for name, _ in known],
            min_similarity,
        )
    else:
        turns = diarizer(audio, min_speakers=min_speakers, max_speakers=max_speakers, progress_callback=progress)
    assign_word_speakers(turns, {"segments": segments}, fill_nearest=True)
    name_speakers(segments, names)


def name_speakers(segments: list[dict], known: dict[str, str]) -> None:
    """pyannote's SPEAKER_00, ... -> the names in ``known``, else A, B, ... in order of first
    appearance. Segments and their words are relabelled together: the one place speakers are named."""
    names = dict(known)
    taken = set(known.values())
    letters = (letter for i in range(10_000) if (letter := _letter(i)) not in taken)
    for item in (x for s in segments for x in (s, *s.get("words", ()))):
        label = item.get("speaker")
        if label is None:
            continue
        if label not in names:
            names[label] = next(letters)
        item["speaker"] = names[label]


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"S{i}"


def reference_embeddings(diarizer: Any, references: list[np.ndarray]) -> np.ndarray:
    """One embedding per reference recording, from the pipeline's own speaker-embedding model
    (pyannote keeps it as ``_embedding``; it is the model the centroids come from)."""
    import torch

    embed = diarizer.model._embedding
    return np.concatenate([embed(torch.from_numpy(ref[None, None, :])) for ref in references])


def match_known_speakers(
    centroids: dict[str, list[float]], references: np.ndarray, names: list[str], min_similarity: float
) -> dict[str, str]:
    """Pair diarized speakers with known names one to one (the assignment with the highest total
    cosine similarity); pairs below ``min_similarity`` stay unnamed."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    labels = [label for label, vector in centroids.items() if np.all(np.isfinite(vector))]
    if not labels:
        return {}
    similarity = 1.0 - cdist(np.array([centroids[label] for label in labels]), references, metric="cosine")
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return {labels[r]: names[c] for r, c in zip(rows, cols, strict=False) if similarity[r, c] >= min_similarity}
