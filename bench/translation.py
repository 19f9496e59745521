"""Realtime translation (WS /v1/realtime/translations): espeak-ng German, two sentences with a pause,
appended as a microphone would (200 ms of 24 kHz PCM16 per append, in real time), translated into
English (Whisper base's translate task) and spoken in the speaker's cloned voice by a tiny XTTS. Per
sentence: the end of its speech (its last append) to its first translated audio, p50 and p95, at one
and two sessions at once; and the share of the gateway's measured time per turn in transcription,
translation and synthesis (``speech_gateway_translation_seconds``), the rest being the VAD's silence
and waiting."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from websockets.sync.client import connect

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support import tiny_models
from tests.support.espeak import speak
from tests.test_realtime import pcm24

SENTENCES = ["Guten Morgen, ich möchte einen Tisch reservieren.", "Der Zug nach Berlin fährt um acht Uhr."]
FRAME = 4800 * 2  # 200 ms of 24 kHz PCM16
PAUSE = bytes(int(1.5 * 24000) * 2)
STAGES = ("transcribe", "translate", "synthesize", "first_audio")


def paced(ws, pcm: bytes, started: float, sent: float) -> float:
    """Append ``pcm`` in real time after ``sent`` seconds already sent; returns the seconds sent."""
    for at in range(0, len(pcm), FRAME):
        ws.send(json.dumps({"type": "session.input_audio_buffer.append",
                            "audio": base64.b64encode(pcm[at : at + FRAME]).decode()}))  # fmt: skip
        sent += len(pcm[at : at + FRAME]) / 48000
        time.sleep(max(0.0, started + sent - time.perf_counter()))
    return sent


def one_session(url: str, sentences: list[bytes]) -> list[float]:
    """Seconds from the end of each sentence's speech to its first translated audio."""
    ends: list[float] = []
    first_audio: dict[int, float] = {}
    with connect(url.replace("http://", "ws://") + "/v1/realtime/translations?model=whisper-1", max_size=None) as ws:
        json.loads(ws.recv())

        def listen() -> None:
            for raw in ws:
                event = json.loads(raw)
                if event["type"] == "session.output_audio.delta":
                    first_audio.setdefault(event["elapsed_ms"], time.perf_counter())
                elif event["type"] == "error":
                    raise RuntimeError(event)
                elif event["type"] == "session.closed":
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        started, sent = time.perf_counter(), 0.0
        for pcm in sentences:
            sent = paced(ws, pcm, started, sent)
            ends.append(time.perf_counter())
            sent = paced(ws, PAUSE, started, sent)
        ws.send(json.dumps({"type": "session.close"}))
        listener.join(600)
    arrivals = [first_audio[k] for k in sorted(first_audio)]
    if len(arrivals) != len(ends):
        raise RuntimeError(f"{len(arrivals)} translated turns for {len(ends)} sentences")
    return [a - e for a, e in zip(arrivals, ends, strict=True)]


def stage_sums(url: str) -> dict[str, float]:
    sums = dict.fromkeys(STAGES, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("speech_gateway_translation_seconds_sum"):
            stage = line.split('stage="')[1].split('"')[0]
            sums[stage] = float(line.split()[-1])
    return sums


def p95(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def bench_translation(
    tmp: Path, runs: int, threads: int, table: Callable[[str, list[str], list[list[str]]], None]
) -> None:
    reference = speak("This is the default reference voice for the tests.", tmp / "translation-ref.wav")
    services = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_TRANSLATION_MODEL": str(tiny_models.build_m2m100(tmp / "translation-m2m100")),
        },
        tts_env={
            "TTS_MODEL": str(tiny_models.build_xtts(tmp / "translation-xtts")),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(tmp / "translation-tts"),
            "TTS_DEFAULT_SPEAKER_WAV": str(reference),
            "TTS_DEFAULT_SPEAKER_URL": "",
        },
        gateway_env={},
        threads=threads,
    )
    start(services, tmp / "logs-translation")
    sentences = [pcm24(speak(s, tmp / f"translation-{i}.wav", voice="de", rate=150)) for i, s in enumerate(SENTENCES)]
    rows = []
    try:
        url = services[-1].url
        one_session(url, sentences)  # warm: Whisper, the VAD, XTTS, the speaker's latents
        for sessions in (1, 2):
            before = stage_sums(url)
            latencies: list[float] = []
            for _ in range(runs):
                with ThreadPoolExecutor(sessions) as pool:
                    for result in pool.map(lambda _: one_session(url, sentences), range(sessions)):
                        latencies += result
            after = stage_sums(url)
            spent = {stage: after[stage] - before[stage] for stage in STAGES}
            whole = spent["first_audio"] or 1.0
            rows.append(
                [
                    str(sessions),
                    str(len(latencies)),
                    f"{statistics.median(latencies):.2f}",
                    f"{p95(latencies):.2f}",
                    *(f"{spent[stage] / whole:.0%}" for stage in STAGES[:3]),
                ]
            )
    finally:
        for svc in reversed(services):
            svc.stop()
    table(
        f"Realtime translation, German espeak-ng speech to English speech in the speaker's cloned voice: "
        f"two sentences per session with a 1.5 s pause, appended in real time (200 ms), server VAD (500 ms), "
        f"Whisper base int8 (translate task), tiny XTTS, {threads} thread(s), {runs} run(s) per row. Latency: "
        f"the end of a sentence's speech to its first translated audio at the client",
        ["sessions", "sentences", "p50 s", "p95 s", "transcribe", "translate", "synthesize (to first audio)"],
        rows,
    )
