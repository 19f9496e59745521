"""When each word of a known text is spoken in an audio clip (word timings for synthesised speech):
forced alignment, never a decode. Two methods, as ``ASR_WORD_TIMESTAMPS`` chooses for transcription:
``alignment`` (WhisperX's wav2vec2 aligner of the language) or ``whisper`` (Whisper's cross-attention
over the text's own tokens, CTranslate2's ``align``; one 30 s window at most). Either way the answer
has one entry per whitespace-separated word of the text, in order (per character for scripts written
without spaces, as WhisperX aligns them), with times in seconds from the clip's start."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from services.asr.audio import SAMPLE_RATE
from services.asr.decoding import LoadedWhisper, features_of, tokenizer_for
from services.asr.result import fill_word_times

WINDOW_SECONDS = 30.0  # Whisper aligns one window
HOP = 160  # samples per mel frame
MEDIAN_WORD_CAP = 0.7  # seconds: the most the median word length counts for
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")  # kana, Han, Hangul


def words_of(text: str) -> list[str]:
    return text.split()


def by_aligner(aligner: tuple[Any, Any], text: str, audio: np.ndarray, device: str) -> list[dict]:
    """WhisperX's aligner over the whole clip as one segment."""
    import whisperx

    model, metadata = aligner
    duration = audio.size / SAMPLE_RATE
    segment = {"start": 0.0, "end": duration, "text": text}
    aligned = whisperx.align([segment], model, metadata, audio, device, return_char_alignments=False)
    found = [{k: w[k] for k in ("word", "start", "end") if k in w} for w in aligned["word_segments"]]
    words = words_of(text)
    if len(found) == len(words) and not _UNSPACED.search(text):
        found = [{**w, "word": word} for w, word in zip(found, words, strict=True)]
    return _timed(found, duration)


def by_whisper(whisper: LoadedWhisper, text: str, audio: np.ndarray, language: str) -> list[dict]:
    """Whisper's attention over the text's tokens: its word pieces (words and punctuation) are given
    to the words of the text that hold their first character."""
    pipe = whisper.pipe
    tokenizer = tokenizer_for(pipe, language, "transcribe")
    spaced = " " + " ".join(words_of(text))
    tokens = tokenizer.encode(spaced)
    encoded = pipe.model.encode(features_of(pipe, audio))
    (pieces,) = pipe.model.find_alignment(tokenizer, [tokens], encoded, audio.size // HOP)
    spans = _word_spans(spaced)
    found: list[dict] = [{"word": word} for _, _, word in spans]
    offset = 0
    for piece in pieces:
        start_char = offset + len(piece["word"]) - len(piece["word"].lstrip())
        offset += len(piece["word"])
        owner = next((i for i, (lo, hi, _) in enumerate(spans) if lo <= start_char < hi), None)
        if owner is None:
            continue
        word = found[owner]
        word.setdefault("start", float(piece["start"]))
        word["end"] = float(piece["end"])
    return _timed(found, audio.size / SAMPLE_RATE)


def _word_spans(spaced: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", spaced)]


def _timed(words: list[dict], duration: float) -> list[dict]:
    """Times filled where a word got none, clipped to the clip, and no word longer than twice the
    median word (at most 1.4 s): attention puts the end of the last word at the end of the audio,
    trailing silence included (faster-whisper bounds its word timestamps the same way)."""
    filled = fill_word_times(words, 0.0, duration)
    spans = [w["end"] - w["start"] for w in filled if w["end"] > w["start"]]
    longest = 2 * min(MEDIAN_WORD_CAP, float(np.median(spans))) if spans else duration
    return [
        {"word": w["word"], "start": min(w["start"], duration), "end": min(w["end"], w["start"] + longest, duration)}
        for w in filled
    ]
