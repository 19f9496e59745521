"""Realtime transcription latency on Whisper base: utterances of about 3, 7 and 10 s of espeak-ng
speech sent as a microphone would (100 ms of 24 kHz PCM16 per append, at the pace of real time),
with (a) client commits: commit to `...completed`, and (b) server VAD: the last appended speech to
`...completed` (the VAD's silence_duration_ms of 500 included), and speech start to the first delta."""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.espeak import speak

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please schedule a meeting with the design team on Thursday afternoon.",
    "Open source software lets teams build on the work of others.",
]
CHUNK = 2400  # samples: 100 ms at 24 kHz


def utterance(tmp: Path, count: int) -> bytes:
    parts = [sf.read(speak(s, tmp / f"rt{count}-{i}.wav"), dtype="float32")[0] for i, s in enumerate(SENTENCES[:count])]
    joined = tmp / f"rt{count}.wav"
    sf.write(joined, np.concatenate(parts), 16000)
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(joined), "-ar", "24000", "-ac", "1", "-f", "s16le", "-"],
        check=True,
        capture_output=True,
    ).stdout


def _session(url: str, vad: bool):
    ws = connect(url.replace("http://", "ws://") + "/v1/realtime?intent=transcription", max_size=None)
    turns = {"type": "server_vad", "silence_duration_ms": 500} if vad else None
    ws.send(
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {"transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": turns}
                    },
                },
            }
        )
    )
    return ws


def _paced(ws, pcm: bytes) -> float:
    """Append in real time; returns when the last chunk left."""
    started = time.perf_counter()
    for i in range(0, len(pcm), CHUNK * 2):
        ws.send(
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + CHUNK * 2]).decode()}
            )
        )
        time.sleep(max(0.0, started + (i // 2 + CHUNK) / 24000 - time.perf_counter()))
    return time.perf_counter()


def _wait(ws, started: float) -> tuple[float, float]:
    """Seconds from ``started`` to the first delta and to `...completed`."""
    first = None
    while True:
        event = json.loads(ws.recv(timeout=600))
        if event["type"].endswith("transcription.delta") and first is None:
            first = time.perf_counter() - started
        if event["type"].endswith("transcription.completed"):
            return first or 0.0, time.perf_counter() - started
        if event["type"] in ("error", "conversation.item.input_audio_transcription.failed"):
            raise RuntimeError(event)


def run_once(url: str, pcm: bytes, vad: bool) -> tuple[float, float]:
    """(seconds from the end of speech to completed, seconds from the start of speech to the first delta)"""
    with _session(url, vad) as ws:
        speech_start = time.perf_counter()
        speech_end = _paced(ws, pcm)
        if vad:
            silence = bytes(24000 * 2)  # 1 s of silence, paced, lets the VAD end the turn
            _paced(ws, silence)
        else:
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        first, done = _wait(ws, speech_end)
        return done, first + (speech_end - speech_start)


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def bench_realtime(
    tmp: Path, runs: int, threads: int, batch: int, table: Callable[[str, list[str], list[list[str]]], None]
) -> None:
    services = local_stack(
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_BATCH_SIZE": str(batch)},
        tts_env={},
        gateway_env={},
        threads=threads,
    )
    start(services, tmp / "logs-realtime")
    rows = []
    try:
        url = services[-1].url
        clips = {count: utterance(tmp, count) for count in (1, 2, 3)}
        run_once(url, clips[1], vad=False)  # warm: loads Whisper and the VAD
        for pcm in clips.values():
            seconds = len(pcm) / 48000
            for vad in (False, True):
                samples = [run_once(url, pcm, vad) for _ in range(runs)]
                ends, firsts = [s[0] for s in samples], [s[1] for s in samples]
                rows.append(
                    [
                        f"{seconds:.1f} s",
                        "server VAD" if vad else "client commit",
                        f"{p(ends, 50):.3f}",
                        f"{p(ends, 95):.3f}",
                        f"{p(firsts, 50):.3f}",
                        f"{p(ends, 50) / seconds:.3f}",
                    ]
                )
    finally:
        for svc in reversed(services):
            svc.stop()
    table(
        f"Realtime transcription: espeak-ng speech appended in real time (100 ms chunks), Whisper base int8, "
        f"{threads} thread(s), {runs} runs each. End of speech -> completed includes, with server VAD, the "
        "500 ms of silence that ends a turn; items are transcribed when their turn ends, so the first delta "
        "comes after the speech",
        [
            "utterance",
            "turns",
            "end of speech -> completed p50 s",
            "p95 s",
            "speech start -> first delta p50 s",
            "p50 / utterance",
        ],
        rows,
    )
