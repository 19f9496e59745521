"""Realtime transcription on Whisper base: espeak-ng utterances sent as a microphone would (100 ms of
24 kHz PCM16 per append, at the pace of real time) with server VAD, then 1 s of paced silence.
Side by side: the delays (how often the open turn is decoded again for partial text) on one
session: speech start to the first delta, end of speech to `...completed` (the VAD's 500 ms of
silence included), WER, and the ASR predictor's CPU seconds per second of audio; then 1, 2, 4 and 8
sessions at once at the default delay."""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from websockets.sync.client import connect

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.espeak import speak
from tests.support.text import wer

SENTENCES = [
    "Please schedule a meeting with the design team on Thursday afternoon.",
    "Open source software lets teams build on the work of others.",
]
CHUNK = 2400  # samples: 100 ms at 24 kHz
DELAYS = ("xhigh", "high", "low", "minimal")
SESSIONS = (1, 2, 4, 8)


def utterance(tmp: Path) -> tuple[bytes, str]:
    parts = [sf.read(speak(s, tmp / f"rt-{i}.wav"), dtype="float32")[0] for i, s in enumerate(SENTENCES)]
    joined = tmp / "rt.wav"
    sf.write(joined, np.concatenate(parts), 16000)
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(joined), "-ar", "24000", "-ac", "1", "-f", "s16le", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return pcm, " ".join(SENTENCES)


@dataclass
class Result:
    first_delta: float  # seconds from the start of speech
    completed: float  # seconds from the end of speech
    transcript: str
    deltas: int


def _paced(ws, pcm: bytes) -> float:
    """Append in real time; returns when the last chunk left."""
    started = time.perf_counter()
    for i in range(0, len(pcm), CHUNK * 2):
        chunk = base64.b64encode(pcm[i : i + CHUNK * 2]).decode()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        time.sleep(max(0.0, started + (i // 2 + CHUNK) / 24000 - time.perf_counter()))
    return time.perf_counter()


def run_once(url: str, pcm: bytes, delay: str) -> Result:
    with connect(url.replace("http://", "ws://") + "/v1/realtime?intent=transcription", max_size=None) as ws:
        audio_input = {
            "transcription": {"model": "whisper-1", "language": "en", "delay": delay},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        }
        ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}
            )
        )
        first: list[float] = []
        done: list[tuple[float, str]] = []
        deltas = [0]

        def listen() -> None:
            for raw in ws:
                event = json.loads(raw)
                if event["type"].endswith("transcription.delta"):
                    deltas[0] += 1
                    if not first:
                        first.append(time.perf_counter())
                elif event["type"].endswith("transcription.completed"):
                    done.append((time.perf_counter(), event["transcript"]))
                    return
                elif event["type"] in ("error", "conversation.item.input_audio_transcription.failed"):
                    raise RuntimeError(event)

        listener = threading.Thread(target=listen)
        listener.start()
        speech_start = time.perf_counter()
        speech_end = _paced(ws, pcm)
        _paced(ws, bytes(24000 * 2))  # 1 s of silence lets the VAD end the turn
        listener.join(600)
        if not done:
            raise RuntimeError("no completed event")
        return Result(first[0] - speech_start, done[0][0] - speech_end, done[0][1], deltas[0])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p50(values: list[float]) -> float:
    return statistics.median(values)


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
    assert services[0].proc is not None  # noqa: S101
    asr_pid = services[0].proc.pid
    delay_rows, session_rows = [], []
    try:
        url = services[-1].url
        pcm, text = utterance(tmp)
        seconds = len(pcm) / 48000
        run_once(url, pcm, "low")  # warm: loads Whisper and the VAD
        for delay in DELAYS:
            cpu = cpu_seconds(asr_pid)
            results = [run_once(url, pcm, delay) for _ in range(runs)]
            used = (cpu_seconds(asr_pid) - cpu) / (runs * (seconds + 1))
            delay_rows.append(
                [
                    delay,
                    f"{p50([r.first_delta for r in results]):.2f}",
                    f"{p50([r.completed for r in results]):.2f}",
                    f"{p50([r.deltas for r in results]):.0f}",
                    f"{wer([text] * runs, [r.transcript for r in results]):.3f}",
                    f"{used:.2f}",
                ]
            )
        for count in SESSIONS:
            cpu = cpu_seconds(asr_pid)
            with ThreadPoolExecutor(count) as pool:
                results = list(pool.map(lambda _: run_once(url, pcm, "low"), range(count)))
            used = (cpu_seconds(asr_pid) - cpu) / (count * (seconds + 1))
            session_rows.append(
                [
                    str(count),
                    f"{p50([r.first_delta for r in results]):.2f}",
                    f"{max(r.first_delta for r in results):.2f}",
                    f"{p50([r.completed for r in results]):.2f}",
                    f"{max(r.completed for r in results):.2f}",
                    f"{wer([text] * count, [r.transcript for r in results]):.3f}",
                    f"{used:.2f}",
                ]
            )
    finally:
        for svc in reversed(services):
            svc.stop()
    table(
        f"Realtime transcription by delay: one session, {seconds:.1f} s of espeak-ng speech appended in real time "
        f"(100 ms chunks) then 1 s of silence, server VAD (500 ms), Whisper base int8, {threads} thread(s), "
        f"{runs} runs each. xhigh is the final decode only (the whole transcript as one delta when the turn ends)",
        [
            "delay",
            "speech start -> first delta p50 s",
            "end of speech -> completed p50 s",
            "deltas",
            "WER",
            "ASR CPU s per audio s",
        ],
        delay_rows,
    )
    table(
        f"Realtime transcription, sessions at once (delay low, the same {seconds:.1f} s utterance in each, "
        f"started together), Whisper base int8, {threads} thread(s)",
        [
            "sessions",
            "first delta p50 s",
            "first delta max s",
            "completed p50 s",
            "completed max s",
            "WER",
            "ASR CPU s per audio s",
        ],
        session_rows,
    )
