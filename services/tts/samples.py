"""Voice samples: decoded from any container FFmpeg knows, checked to hold enough speech (and not
too much), trimmed of leading and trailing silence. Everything here is a 400 before any model work."""

from __future__ import annotations

import threading

import numpy as np

from services.common import audio
from services.common.errors import BadRequest

RATE = 24000  # what the store keeps (XTTS resamples references itself)
FRAME = RATE // 50  # 20 ms
SILENCE = 10 ** (-45 / 20)  # frame RMS below -45 dBFS is silence
MARGIN = RATE // 10  # kept around the speech when trimming
DECODE_SLACK = 30.0  # seconds of silence a sample may carry beyond its speech limit


class BadSample(BadRequest):
    def __init__(self, message: str, code: str, param: str = "audio_sample") -> None:
        super().__init__(message, param=param, code=code)


def speech_span(samples: np.ndarray) -> tuple[int, int] | None:
    """First and last sample of the frames above the silence level; None when all are silent."""
    frames = samples[: samples.size // FRAME * FRAME].reshape(-1, FRAME)
    if frames.size == 0:
        return None
    loud = np.flatnonzero(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) > SILENCE)
    if loud.size == 0:
        return None
    return int(loud[0]) * FRAME, (int(loud[-1]) + 1) * FRAME


def prepare(
    data: bytes | memoryview,
    min_seconds: float,
    max_seconds: float,
    cancel: threading.Event | None = None,
    *,
    param: str = "audio_sample",
) -> np.ndarray:
    """The recording's speech as mono float32 at ``RATE``, or a 400 saying what is wrong with it."""
    try:
        samples = audio.decode(data, max_seconds + DECODE_SLACK, RATE, param=param, cancel=cancel)
    except audio.AudioTooLong:
        raise BadSample(f"{param} is too long: at most {max_seconds:g} s of speech", "sample_too_long", param) from None
    span = speech_span(samples)
    if span is None:
        raise BadSample(f"{param} is silent: it holds no speech", "sample_silent", param)
    start, end = span
    seconds = (end - start) / RATE
    if seconds < min_seconds:
        raise BadSample(
            f"{param} holds {seconds:.1f} s of speech; at least {min_seconds:g} s is needed", "sample_too_short", param
        )
    if seconds > max_seconds:
        raise BadSample(
            f"{param} holds {seconds:.1f} s of speech; at most {max_seconds:g} s is taken", "sample_too_long", param
        )
    return samples[max(0, start - MARGIN) : end + MARGIN]
