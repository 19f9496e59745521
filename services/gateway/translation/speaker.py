"""The speaker's own speech, kept to speak the translation in their voice: the session's first turns,
up to ``seconds`` of them, cut from a short ring of the latest input (kept only until the reference is
full). Bounded: the ring (``RING_SECONDS``) plus the reference."""

from __future__ import annotations

import io
import wave

RATE = 24000  # a translation session's input: PCM16 mono at 24 kHz
RING_SECONDS = 35  # a turn is at most 30 s (Whisper's window), ended a moment after its audio arrived
MIN_SECONDS = 1.0  # the TTS predictor conditions on no less


class SpeakerReference:
    def __init__(self, seconds: float) -> None:
        self.limit = int(seconds * RATE) * 2  # bytes
        self.ring = bytearray()
        self.ring_start = 0  # the absolute sample index of ring[0]
        self.speech = bytearray()
        self._wav: bytes | None = None

    @property
    def full(self) -> bool:
        return len(self.speech) >= self.limit

    def heard(self, pcm: bytes, at: int) -> None:
        """``pcm`` arrived, its first sample being the session's ``at``-th."""
        if self.full:
            self.ring = bytearray()
            return
        if not self.ring:
            self.ring_start = at
        self.ring += pcm
        excess = len(self.ring) - RING_SECONDS * RATE * 2
        if excess > 0:
            del self.ring[:excess]
            self.ring_start += excess // 2

    def turn(self, start_ms: int, end_ms: int) -> None:
        """A turn of speech ended: its audio joins the reference (while there is room)."""
        if self.full:
            return
        start = max(start_ms * RATE // 1000 - self.ring_start, 0) * 2
        end = max(end_ms * RATE // 1000 - self.ring_start, 0) * 2
        piece = self.ring[start:end][: self.limit - len(self.speech)]
        if piece:
            self.speech += piece
            self._wav = None

    def wav(self) -> bytes | None:
        """The reference as a WAV file, or None while it holds less than ``MIN_SECONDS``."""
        if len(self.speech) < MIN_SECONDS * RATE * 2:
            return None
        if self._wav is None:
            out = io.BytesIO()
            with wave.open(out, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(bytes(self.speech))
            self._wav = out.getvalue()
        return self._wav
