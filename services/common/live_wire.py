"""The protocol between the gateway and the ASR predictor for live (realtime) transcription: one
WebSocket per session on ``/v2/models/<name>/live``. The gateway sends the client's audio as binary
frames, in the session's input format (resampled on the predictor), and JSON control messages; the
predictor answers with JSON events. An error about audio carries ``frame``, the number of the binary
frame it is about (from 1), so the gateway can name the client's append event. The constants both
sides need live here, and only here."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

RATE = 16000  # what Whisper and the VAD take
INPUT_RATES = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}  # OpenAI's realtime input formats
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # ISO 639-1 (or -3 where it has none), as Whisper names languages
MIN_COMMIT_MS = 100  # a commit of less audio is OpenAI's input_audio_buffer_commit_empty
# How long Whisper waits before emitting text: the interval between re-decodes of an open turn
# (OpenAI's ``audio.input.transcription.delay``); ``xhigh``: no partial text, the final only.
DELAYS = {"minimal": 0.5, "low": 1.0, "medium": 1.5, "high": 2.5, "xhigh": None}

# gateway -> predictor (text frames; audio goes as binary frames)
CONFIGURE, COMMIT, CLEAR = "configure", "commit", "clear"
# predictor -> gateway
SPEECH_STARTED, SPEECH_STOPPED, TIMEOUT = "speech_started", "speech_stopped", "timeout_triggered"
COMMITTED, CLEARED, DELTA, COMPLETED, FAILED, ERROR = "committed", "cleared", "delta", "completed", "failed", "error"
CONFIGURED = "configured"  # a configure was taken (with its event_id); messages are handled in order


def ms(samples: int) -> int:
    """16 kHz samples as milliseconds since the session started (OpenAI's audio_start_ms, ...)."""
    return samples * 1000 // RATE


@dataclass(frozen=True)
class Vad:
    """Server VAD (OpenAI's ``turn_detection``; ``semantic_vad`` is served as this): speech at or above
    ``threshold``, a turn reaching back ``prefix_padding_ms``, ending after ``silence_duration_ms`` of
    silence; ``idle_timeout_ms``: commit what was heard once nobody has spoken for that long."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None

    def wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, value: Any) -> Vad | None:
        return None if value is None else cls(**value)
