"""Live transcription's model boundary for in-process tests: "tone words" (0.2 s bursts of a tone,
0.1 s apart) as the speech, a scripted decoder in Whisper's place that says one word per whole burst
it hears (and, as Whisper does with a word cut off at the end of a clip, a guess for a burst cut at
the end of a partial decode's audio), and a loudness score in Silero's."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI

from scripts.devstack import free_port
from services.asr.live.route import add_live_route
from services.asr.live.session import Decoded, LiveConfig
from services.asr.settings import AsrSettings
from services.asr.text_translation import UnsupportedLanguage
from services.asr.vad import FRAME
from services.common import live_wire as wire
from services.common.draining import Drain
from services.common.logs import REQUEST_ID
from services.common.work import Cancelled

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]
IN_RATE = 24000
BURST, GAP = 0.2, 0.1


def tone_words(count: int, *, lead: float = 0.5, tail: float = 1.0) -> bytes:
    """24 kHz PCM16: ``lead`` s of silence, ``count`` bursts, ``tail`` s of silence."""
    parts = [np.zeros(int(lead * IN_RATE))]
    t = np.arange(int(BURST * IN_RATE)) / IN_RATE
    for _ in range(count):
        parts += [0.3 * np.sin(2 * np.pi * 300 * t), np.zeros(int(GAP * IN_RATE))]
    parts.append(np.zeros(int(tail * IN_RATE)))
    return (np.concatenate(parts) * 32767).astype("<i2").tobytes()


def loudness(samples: np.ndarray) -> list[float]:
    frames = samples[: samples.size // FRAME * FRAME].reshape(-1, FRAME)
    return [0.9 if np.sqrt(np.mean(f**2)) > 0.05 else 0.05 for f in frames]


@dataclass
class ScriptedWhisper:
    """One word per tone burst; a burst cut off at the end of the audio is guessed as 'uh' in partials."""

    calls: list[tuple[bool, float]] = field(default_factory=list)
    request_ids: set[str] = field(default_factory=set)
    hold: Callable[[bool, float], object] | None = None  # called in the worker thread before answering
    fail: bool = False  # every decode raises (a model failure)
    heard: str = "en"  # the language it detects
    tasks: list[str] = field(default_factory=list)

    def __call__(
        self,
        audio: np.ndarray,
        config: LiveConfig,
        *,
        final: bool,
        language: str | None,
        cancel: threading.Event,
        task: str = "transcribe",
    ) -> Decoded:
        self.calls.append((final, audio.size / wire.RATE))
        self.tasks.append(task)
        self.request_ids.add(REQUEST_ID.get())
        if self.fail:
            raise RuntimeError("CUDA error: /secret/path exploded")
        if self.hold is not None:
            self.hold(final, audio.size / wire.RATE)
        if cancel.is_set():
            raise Cancelled
        loud = np.abs(audio) > 0.05
        blocks = loud[: loud.size // 160 * 160].reshape(-1, 160).any(axis=1)  # 10 ms blocks
        edges = np.flatnonzero(np.diff(blocks.astype(int)) == -1)  # bursts that ended
        cut = bool(blocks.size and blocks[-1])
        said = [WORDS[i % len(WORDS)] for i in range(len(edges))]
        if cut:
            said.append(WORDS[len(edges) % len(WORDS)] if final else "uh")
        text = " ".join(said)  # as Whisper writes a clip: a capital, a full stop at the end
        if task == "translate":  # "English": the same words, shouted
            return Decoded(text.upper() + "." if text else "", "en")
        return Decoded(text.capitalize() + "." if text else "", language or self.heard)


@dataclass
class ScriptedTranslator:
    """Text translation that knows a few languages and writes the words backwards."""

    known: frozenset[str] = frozenset({"en", "de", "fr"})
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def languages(self) -> frozenset[str]:
        return self.known

    def translate(self, text: str, source: str, target: str, cancel: threading.Event) -> str:
        self.calls.append((text, source, target))
        for language in (source, target):
            if language not in self.known:
                raise UnsupportedLanguage(language)
        return " ".join(word[::-1] for word in text.split())


@contextlib.contextmanager
def live_predictor(whisper: ScriptedWhisper, **settings: Any) -> Iterator[LivePredictor]:
    """The ASR predictor's real live route (``add_live_route``) around ``whisper``, on a loopback port."""
    app = FastAPI()
    drain = Drain("ASR backend", 5)
    add_live_route(app, "asr", decode=whisper, score=loudness, settings=AsrSettings(**settings), drain=drain)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield LivePredictor(f"http://127.0.0.1:{server.config.port}", drain, server)
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class LivePredictor:
    url: str
    drain: Drain
    server: uvicorn.Server
