"""Concurrent clients against the real stack (admission control at work), and the predictors'
peak memory for the largest requests: a long recording (ASR) and 4096 characters (TTS)."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench import speech
from scripts.devstack import Service, local_stack
from tests.conftest import start, whisper_models
from tests.support import tiny_models
from tests.support.espeak import speak

CLIENTS = (1, 4, 8, 16)
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please schedule a meeting with the design team on Thursday afternoon.",
    "Open source software lets teams build on the work of others.",
    "The weather today is sunny with a gentle breeze from the west.",
]


def metric(svc: Service, name: str) -> float:
    text = httpx.get(f"{svc.url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Run:
    """``clients`` threads sending requests for ``seconds``; a 429 waits its Retry-After, as the SDKs do."""

    def __init__(self, send: Callable[[httpx.Client], tuple[int, float, str]], clients: int, seconds: float) -> None:
        self.send, self.clients, self.seconds = send, clients, seconds
        self.latencies: list[float] = []
        self.refused = self.failed = 0
        self.audio = 0.0

    def worker(self) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(timeout=600) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status, audio, retry_after = self.send(http)
                if status == 200:
                    self.latencies.append(time.perf_counter() - started)
                    self.audio += audio
                elif status == 429:
                    self.refused += 1
                    time.sleep(float(retry_after or 1))
                else:
                    self.failed += 1

    def go(self) -> float:
        threads = [threading.Thread(target=self.worker) for _ in range(self.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started


def transcribe(gateway: str, clips: list[tuple[bytes, float]]):
    counter = iter(range(10**9))

    def send(http: httpx.Client) -> tuple[int, float, str]:
        data, seconds = clips[next(counter) % len(clips)]
        r = http.post(f"{gateway}/v1/audio/transcriptions", files={"file": data}, data={"model": "whisper-1"})
        return r.status_code, seconds, r.headers.get("retry-after", "")

    return send


def synthesise(gateway: str):
    def send(http: httpx.Client) -> tuple[int, float, str]:
        r = http.post(
            f"{gateway}/v1/audio/speech",
            json={
                "model": "tts-1",
                "voice": "alloy",
                "response_format": "pcm",
                "input": " ".join(SENTENCES[:2]),
                "stream": False,
            },
        )
        return r.status_code, len(r.content) / 2 / 24000, r.headers.get("retry-after", "")

    return send


def row(
    kind: str, clients: int, run: Run, wall: float, *, predictor: Service, prefix: str, before: tuple[float, float]
) -> list[str]:
    waits = metric(predictor, f"{prefix}_queue_wait_seconds_sum") - before[0]
    count = metric(predictor, f"{prefix}_queue_wait_seconds_count") - before[1]
    done = len(run.latencies)
    share = run.refused / max(1, run.refused + done + run.failed)
    p50 = statistics.median(run.latencies) if done else float("nan")
    p95 = statistics.quantiles(run.latencies, n=20)[-1] if done >= 2 else p50
    return [
        kind,
        str(clients),
        str(done),
        f"{share:.0%}",
        str(run.failed),
        f"{done / wall:.2f}",
        f"{run.audio / wall:.1f}",
        f"{p50:.2f}",
        f"{p95:.2f}",
        f"{waits / max(count, 1):.2f}",
    ]


def bench_load(tmp: Path, threads: int, seconds: float, table) -> None:
    wavs = [speak(s, tmp / f"load{i}.wav") for i, s in enumerate(SENTENCES)]
    clips = [(w.read_bytes(), _duration(w)) for w in wavs]
    vits = tiny_models.build_vits(tmp / "vits-load", ["alloy"])
    asr, tts, gw = local_stack(
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_MAX_QUEUE": "8"},
        tts_env={
            "TTS_MODEL": str(vits),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_MAX_QUEUE": "8",
            "TTS_HOME": str(tmp / "tts-home-load"),
        },
        gateway_env={},
        threads=threads,
    )
    start([asr, tts, gw], tmp / "logs-load")
    rows = []
    try:
        for kind, send, predictor, prefix in (
            ("transcription", transcribe(gw.url, clips), asr, "speech_asr"),
            ("speech", synthesise(gw.url), tts, "speech_tts"),
        ):
            Run(send, 1, 0.1).go()  # warm the model
            for clients in CLIENTS:
                before = (
                    metric(predictor, f"{prefix}_queue_wait_seconds_sum"),
                    metric(predictor, f"{prefix}_queue_wait_seconds_count"),
                )
                run = Run(send, clients, seconds)
                wall = run.go()
                rows.append(row(kind, clients, run, wall, predictor=predictor, prefix=prefix, before=before))
    finally:
        for svc in (gw, tts, asr):
            svc.stop()
    table(
        f"Load: clients sending back to back for {seconds:.0f} s (a 429 waits its Retry-After), one predictor "
        f"of each with max_queue 8 (ASR max_active 4 with cross-request batching, TTS 1), {threads} thread(s); "
        "transcription: 3-4 s espeak clips "
        "on Whisper base; speech: 2 sentences on the tiny VITS",
        ["kind", "clients", "ok", "429 share", "errors", "req/s", "audio s/s", "p50 s", "p95 s", "queue wait s"],
        rows,
    )


def _duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def long_opus(tmp: Path, minutes: int) -> Path:
    """``minutes`` of speech as 24 kbps Opus, under the 25 MiB limit: five minutes of distinct
    sentences, over and over (no 30 s window repeats itself, so no fallback re-decodes)."""
    import soundfile as sf

    block = speech.recording(tmp, min(minutes, 5) * 60)
    wav = tmp / "long.wav"
    sf.write(wav, np.tile(block, int(np.ceil(minutes * 60 * 16000 / block.size)))[: minutes * 60 * 16000], 16000)
    out = tmp / f"long-{minutes}min.ogg"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "libopus", "-b:a", "24k", str(out)], check=True
    )
    wav.unlink()
    return out


def bench_memory(tmp: Path, threads: int, minutes: int, table) -> None:
    audio = long_opus(tmp, minutes)
    vits = tiny_models.build_vits(tmp / "vits-mem", ["alloy"])
    asr, tts, gw = local_stack(
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never"},
        tts_env={"TTS_MODEL": str(vits), "TTS_UNLOAD_POLICY": "never", "TTS_HOME": str(tmp / "tts-home-mem")},
        gateway_env={"GATEWAY_READ_TIMEOUT": "3600"},
        threads=threads,
    )
    start([asr, tts, gw], tmp / "logs-mem")
    rows = []
    try:
        short = speak(SENTENCES[0], tmp / "warm.wav").read_bytes()
        httpx.post(
            f"{gw.url}/v1/audio/transcriptions", files={"file": short}, data={"model": "whisper-1"}, timeout=600
        ).raise_for_status()
        warm = peak_rss_mb(asr.process.pid)
        started = time.perf_counter()
        r = httpx.post(
            f"{gw.url}/v1/audio/transcriptions",
            files={"file": audio.read_bytes()},
            data={"model": "whisper-1"},
            timeout=3600,
        )
        took = time.perf_counter() - started
        rows.append(
            [
                "ASR",
                f"{minutes} min of speech, {audio.stat().st_size / 1e6:.1f} MB Opus",
                str(r.status_code),
                f"{warm:.0f}",
                f"{peak_rss_mb(asr.process.pid):.0f}",
                f"{took:.0f}",
            ]
        )
        body = {"model": "tts-1", "voice": "alloy", "input": ("word " * 820)[:4096], "response_format": "wav"}
        httpx.post(f"{gw.url}/v1/audio/speech", json=body | {"input": "Hello."}, timeout=600).raise_for_status()
        warm = peak_rss_mb(tts.process.pid)
        for stream in (False, True):
            started = time.perf_counter()
            r = httpx.post(f"{gw.url}/v1/audio/speech", json=body | {"stream": stream}, timeout=600)
            rows.append(
                [
                    "TTS",
                    f"4096 unpunctuated characters, {'streamed' if stream else 'whole'}",
                    str(r.status_code),
                    f"{warm:.0f}",
                    f"{peak_rss_mb(tts.process.pid):.0f}",
                    f"{time.perf_counter() - started:.0f}",
                ]
            )
    finally:
        for svc in (gw, tts, asr):
            svc.stop()
    table(
        f"Peak memory (VmHWM) of each predictor for its largest request, {threads} thread(s)",
        ["predictor", "request", "status", "peak RSS warm MB", "peak RSS after MB", "seconds"],
        rows,
    )
