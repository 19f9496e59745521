"""Shape WhisperX output into the one rich result the gateway renders into every format."""

from __future__ import annotations

import zlib

import numpy as np

from services.asr.audio import SAMPLE_RATE


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def language_name(code: str) -> str:
    from whisperx.utils import LANGUAGES

    return LANGUAGES.get(code, code)


def verbose_segment(
    idx: int,
    *,
    start: float,
    end: float,
    text: str,
    tokens: list[int],
    temperature: float,
    avg_logprob: float,
    no_speech_prob: float,
) -> dict:
    """A segment with every field of OpenAI's ``TranscriptionSegment``."""
    return {
        "id": idx,
        "seek": round(start * 100),  # Whisper's seek counts 10 ms frames
        "start": round(float(start), 3),
        "end": round(float(end), 3),
        "text": text,
        "tokens": tokens,
        "temperature": float(temperature),
        "avg_logprob": float(avg_logprob),
        "compression_ratio": compression_ratio(text),
        "no_speech_prob": float(no_speech_prob),
    }


def fill_word_times(words: list[dict], start: float, end: float) -> list[dict]:
    """Alignment leaves words it cannot place (digits, symbols) without times: take the neighbours'."""
    out: list[dict] = []
    for i, word in enumerate(words):
        w = dict(word)
        if "start" not in w:
            w["start"] = out[-1]["end"] if out else start
        if "end" not in w:
            nxt = next((x["start"] for x in words[i + 1 :] if "start" in x), end)
            w["end"] = max(w["start"], nxt)
        w["start"], w["end"] = round(float(w["start"]), 3), round(float(max(w["end"], w["start"])), 3)
        out.append(w)
    return out


def attach_words(segments: list[dict], words: list[dict]) -> None:
    """Give each word to the segment holding its midpoint (or the nearest one), in order."""
    for seg in segments:
        seg["words"] = []
    for word in words:
        mid = (word["start"] + word["end"]) / 2
        seg = min(
            segments,
            key=lambda s: 0.0 if s["start"] <= mid <= s["end"] else min(abs(mid - s["start"]), abs(mid - s["end"])),
        )
        seg["words"].append(word)
    for seg in segments:  # keep every word inside its segment's span
        for word in seg["words"]:
            word["start"] = min(max(word["start"], seg["start"]), seg["end"])
            word["end"] = min(max(word["end"], word["start"]), seg["end"])


def assemble(language: str, audio: np.ndarray, task: str, segments: list[dict]) -> dict:
    words = [w for s in segments for w in s.get("words", [])]
    result = {
        "task": task,
        "language": language,
        "language_name": language_name(language),
        "duration": round(len(audio) / SAMPLE_RATE, 3),
        "text": "".join(s["text"] for s in segments).strip(),
        "segments": segments,
    }
    if any("words" in s for s in segments):
        result["words"] = words
    if any("logprobs" in s for s in segments):
        result["logprobs"] = [item for s in segments for item in s["logprobs"]]
    return result
