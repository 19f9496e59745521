"""Word timings of synthesised speech, measured rather than estimated: the ASR predictor aligns the
audio with the text it was made from (its ``align`` task: WhisperX's aligner of the language, or
Whisper's attention, as ``ASR_WORD_TIMESTAMPS`` says). A language no aligner serves is the ASR
predictor's 400, naming it; an ASR predictor that is down is a 503 naming the ASR backend."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np

from services.gateway.audio_encoding import encode_whole
from services.gateway.backends import Backend, Blob, new_request


async def align_words(
    asr: Backend, samples: np.ndarray, rate: int, text: str, language: str, *, model: str, offset: float = 0.0
) -> list[dict]:
    """``[{"word", "start", "end"}]`` for each word of ``text`` in order, in seconds from ``offset``
    (the start of this audio within the whole speech)."""
    wav = await asyncio.to_thread(encode_whole, samples, rate, "wav", rate)
    parameters = {"model": model, "task": "align", "text": text, "language": language}
    output = await asr.infer(new_request(parameters), [Blob.of("audio", [wav])], "result")
    raw = output.raw or b""
    try:
        (length,) = struct.unpack_from("<I", raw)
        words = json.loads(raw[4 : 4 + length])["words"]
        return [
            {"word": str(w["word"]), "start": round(offset + w["start"], 3), "end": round(offset + w["end"], 3)}
            for w in words
        ]
    except (ValueError, TypeError, KeyError, struct.error) as exc:
        raise asr.malformed(exc) from exc
