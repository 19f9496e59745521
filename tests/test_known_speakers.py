"""Pairing diarized speakers with known speakers' references (the end-to-end path is in
test_transcription_features; here the pairing rule itself, on vectors with a known answer)."""

import numpy as np

from services.asr.diarization import match_known_speakers


def unit(degrees: float) -> list[float]:
    return [float(np.cos(np.radians(degrees))), float(np.sin(np.radians(degrees)))]


def test_pairs_one_to_one_by_total_similarity():
    # SPEAKER_00 is nearest "agent" (cos 25 deg), but naming it so would leave SPEAKER_01 with
    # "customer" at 90 deg; the best total pairing names SPEAKER_00 "customer" (35 deg) instead.
    centroids = {"SPEAKER_00": unit(25), "SPEAKER_01": unit(-30)}
    references = np.array([unit(0), unit(60)])
    assert match_known_speakers(centroids, references, ["agent", "customer"], 0.0) == {
        "SPEAKER_00": "customer",
        "SPEAKER_01": "agent",
    }


def test_dissimilar_speakers_stay_unnamed():
    centroids = {"SPEAKER_00": [1.0, 0.0], "SPEAKER_01": [0.0, 1.0]}
    references = np.array([[1.0, 0.05], [-1.0, 0.0]])
    assert match_known_speakers(centroids, references, ["agent", "customer"], 0.5) == {"SPEAKER_00": "agent"}


def test_speakers_without_an_embedding_are_skipped():
    centroids = {"SPEAKER_00": [float("nan"), 0.0], "SPEAKER_01": [0.0, 1.0]}
    assert match_known_speakers(centroids, np.array([[0.0, 1.0]]), ["agent"], 0.0) == {"SPEAKER_01": "agent"}
    assert match_known_speakers({}, np.array([[0.0, 1.0]]), ["agent"], 0.0) == {}
