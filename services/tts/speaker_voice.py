"""A voice taken from a live speaker: the XTTS conditioning latents of a reference recording sent with
the request (``reference``: a realtime translation session speaks each translated sentence in the
speaker's own voice). The latents of recent references are kept in memory by the recording's digest,
so the sentences of one turn condition once; nothing is written to the voice store."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from services.tts import samples
from services.tts.voice_library import conditioning
from services.tts.voice_store import write_wav

MIN_SECONDS, MAX_SECONDS = 1.0, 30.0  # speech a reference must hold; beyond, its first 30 s


def reference_speech(data: bytes | memoryview, cancel: threading.Event | None = None) -> np.ndarray:
    """The reference's speech at ``samples.RATE`` (a 400 naming ``reference`` when it has too little)."""
    return samples.prepare(data, MIN_SECONDS, MAX_SECONDS, cancel, param="reference")


class SpeakerVoices:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._latents: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def latents(self, model: Any, speech: np.ndarray) -> tuple[Any, Any]:
        key = hashlib.sha256(speech.tobytes()).hexdigest()
        with self._lock:
            if key in self._latents:
                self._latents.move_to_end(key)
                return self._latents[key]
        with tempfile.TemporaryDirectory(prefix="speaker-") as tmp:
            path = Path(tmp) / "reference.wav"
            write_wav(path, speech, samples.RATE)
            found = conditioning(model, path)
        with self._lock:
            self._latents[key] = found
            while len(self._latents) > self.capacity:
                self._latents.popitem(last=False)
        return found
