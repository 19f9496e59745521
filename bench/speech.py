"""Long test recordings of ordinary, non-repeating speech for the benchmarks.

A recording that repeats a sentence makes every 30 s window compress well, so Whisper's fallback rule
(compression ratio > 2.4: "looks like a repetition loop") re-decodes each window at up to five more
temperatures. That is the right behaviour for a real loop and the wrong workload for a speed
benchmark, so the long recordings here are made of distinct sentences (the bench also measures
the repeating case on purpose, to show what the fallback costs).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from tests.support.espeak import speak

_WHO = [
    "engineers",
    "our neighbour",
    "a young pilot",
    "Captain Moreau",
    "my sister",
    "that committee",
    "a tired student",
    "Baker Jones",
    "her manager",
    "river guides",
    "one quiet musician",
    "Doctor Patel",
    "twelve farmers",
    "Grandfather",
    "every volunteer",
    "Lucy",
    "several tourists",
    "his cousin",
]
_DID = [
    "painted",
    "repaired",
    "described",
    "carried",
    "ordered",
    "measured",
    "forgot",
    "delivered",
    "borrowed",
    "photographed",
    "cleaned",
    "inspected",
    "sold",
    "hid",
    "found",
    "weighed",
    "wrapped",
]
_WHAT = [
    "a blue bicycle",
    "seven wooden chairs",
    "some garden fences",
    "an enormous map",
    "two silver keys",
    "kitchen windows",
    "a basket of apples",
    "this broken radio",
    "four paper lanterns",
    "library books",
    "a heavy suitcase",
    "morning newspapers",
    "green umbrellas",
    "fresh bread",
    "an iron kettle",
    "dozens of postcards",
    "my grandmother's piano",
    "six jars of honey",
]
_WHEN = [
    "before breakfast",
    "on Tuesday evening",
    "during last night's storm",
    "after each concert",
    "last winter",
    "in early spring",
    "at midnight",
    "yesterday",
    "around noon",
    "every Sunday",
    "in nineteen eighty-four",
    "twice a week",
    "when it snowed",
    "this morning",
]
_WHERE = [
    "near Bristol harbour",
    "behind platform nine",
    "in a village square",
    "beside an old mill",
    "on top of Windy Hill",
    "outside our museum",
    "along its canal",
    "inside their warehouse",
    "under that bridge",
    "across town",
    "at Maria's bakery",
    "down south",
]
_TEMPLATES = [
    "{who} {did} {what} {when} {where}.",
    "{when}, {who} {did} {what} {where}.",
    "Why had {who} {did} {what} {where}?",
    "{where}, {who} quietly {did} {what}.",
    "Nobody knew that {who} {did} {what} {when}.",
]


def varied_sentences(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct sentences from a fixed seed (the same list on every run)."""
    rng, seen, out = random.Random(seed), set[str](), list[str]()
    while len(out) < count:
        parts = {
            "who": rng.choice(_WHO),
            "did": rng.choice(_DID),
            "what": rng.choice(_WHAT),
            "when": rng.choice(_WHEN),
            "where": rng.choice(_WHERE),
        }
        sentence = rng.choice(_TEMPLATES).format(**parts)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence[0].upper() + sentence[1:])
    return out


def recording(tmp: Path, seconds: float, *, varied: bool = True, text: str = "") -> np.ndarray:
    """At least ``seconds`` of 16 kHz speech, a quarter second of silence after each sentence:
    distinct sentences, or (``varied=False``) ``text`` followed by a sentence number, over and over."""
    import soundfile as sf

    parts, total, i = [], 0.0, 0
    pool = varied_sentences(int(seconds // 2) + 8) if varied else []
    while total < seconds:
        sentence = pool[i] if varied else f"{text} Sentence number {i}."
        clip, _ = sf.read(speak(sentence, tmp / f"sentence{i}.wav"), dtype="float32")
        (tmp / f"sentence{i}.wav").unlink()
        parts += [clip, np.zeros(4000, np.float32)]
        total += (len(clip) + 4000) / 16000
        i += 1
    return np.concatenate(parts)
