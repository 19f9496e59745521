"""Decode uploaded audio by content (any container FFmpeg knows), never by file name."""

from __future__ import annotations

import io

import av
import numpy as np
from faster_whisper.audio import decode_audio

SAMPLE_RATE = 16000


class BadAudio(ValueError):
    """The upload is not decodable audio; the message says why."""


def decode(data: bytes | memoryview) -> np.ndarray:
    """Mono float32 samples at 16 kHz."""
    if len(data) == 0:
        raise BadAudio("the audio file is empty")
    try:
        samples = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except (av.error.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        raise BadAudio(f"could not decode the audio file: {exc}") from exc
    if samples.size == 0:
        raise BadAudio("the audio file contains no audio samples")
    return samples
