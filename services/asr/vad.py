"""Voice activity for live sessions' turns: Silero VAD v6, the ONNX model faster-whisper ships in its
wheel (so it runs offline, on CPU, with onnxruntime, without torch), over 32 ms frames of 16 kHz
audio. Stateless per call: each frame is scored with the 4 ms of audio before it, so a session scores
only its new frames (plus the frame before them)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from services.common.live_wire import RATE

FRAME = 512  # 32 ms: the frame Silero v6 scores
MAX_FRAMES = 30 * RATE // FRAME  # 30 s per call bounds the work of one request


class Vad:
    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                from faster_whisper.vad import get_vad_model

                self._model = get_vad_model()
            return self._model

    def scores(self, samples: np.ndarray) -> list[float]:
        """Speech probability of each 512-sample frame of 16 kHz float32 audio (a whole number of frames,
        at most ``MAX_FRAMES``)."""
        if samples.size % FRAME or not samples.size or samples.size // FRAME > MAX_FRAMES:
            raise ValueError(f"VAD audio must be 1 to {MAX_FRAMES} whole {FRAME}-sample frames")
        scores = self._loaded()(np.array(samples, dtype=np.float32))  # a writable copy: the model edits it
        return [round(float(p), 4) for p in np.asarray(scores).reshape(-1)]
