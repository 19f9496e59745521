"""ASR input audio: any container FFmpeg decodes, as 16 kHz mono float32 (what Whisper takes)."""

from __future__ import annotations

import threading

import numpy as np

from services.common import audio
from services.common.audio import AudioTooLong, BadAudio

SAMPLE_RATE = 16000
__all__ = ["SAMPLE_RATE", "AudioTooLong", "BadAudio", "decode"]


def decode(
    data: bytes | memoryview, max_seconds: float, param: str = "file", cancel: threading.Event | None = None
) -> np.ndarray:
    return audio.decode(data, max_seconds, SAMPLE_RATE, param, cancel)
