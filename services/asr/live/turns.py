"""Server VAD turns from per-frame speech probabilities: speech starts at the first frame at or above
the threshold (the turn reaching back ``prefix_padding_ms``), continues while frames stay above a
slightly lower level (Silero's usual hysteresis), and stops once ``silence_duration_ms`` passes
without speech. Positions are absolute 16 kHz sample indices from the session's start."""

from __future__ import annotations

from dataclasses import dataclass

from services.asr.vad import FRAME
from services.common.live_wire import RATE, Vad

HYSTERESIS = 0.15


@dataclass(frozen=True)
class Started:
    sample: int  # where the turn begins (prefix padding included)


@dataclass(frozen=True)
class Stopped:
    sample: int  # the end of the last speech frame
    start: int  # where this turn began (its Started sample): the detector may be in the next turn already


class TurnDetector:
    def __init__(self, vad: Vad) -> None:
        self.vad = vad
        self.in_speech = False
        self.start = self.last_speech = 0

    def reset(self) -> None:
        self.in_speech = False

    def feed(self, first_frame: int, probabilities: list[float]) -> list[Started | Stopped]:
        events: list[Started | Stopped] = []
        prefix = self.vad.prefix_padding_ms * RATE // 1000
        silence = self.vad.silence_duration_ms * RATE // 1000
        for i, p in enumerate(probabilities):
            begin = (first_frame + i) * FRAME
            end = begin + FRAME
            if p >= self.vad.threshold or (self.in_speech and p >= self.vad.threshold - HYSTERESIS):
                if not self.in_speech:
                    self.in_speech, self.start = True, max(0, begin - prefix)
                    events.append(Started(self.start))
                self.last_speech = end
            elif self.in_speech and end - self.last_speech >= silence:
                self.in_speech = False
                events.append(Stopped(self.last_speech, self.start))
        return events
