"""Voices: upload-to-ready time of a cloned voice (sample decode and checks, XTTS conditioning
latents, atomic store), then first-byte and total time of streamed speech with each kind of voice
(built-in speaker, operator recording, OpenAI name falling back to the default reference, clone by
id) on the tiny test XTTS, side by side."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from scripts.devstack import local_stack
from tests.conftest import start
from tests.support import tiny_models
from tests.support.espeak import speak

SAMPLE = "This recording is long enough to clone a voice from, and it has quite a few words in it."
TEXT = "Hello there. This is a cloned voice speaking two sentences."


def _first_byte(gw: httpx.Client, voice: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    with gw.stream(
        "POST",
        "/v1/audio/speech",
        json={"model": "tts-1", "voice": voice, "input": TEXT, "response_format": "pcm", "stream": True},
    ) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def bench_voices(tmp: Path, runs: int, threads: int, table: Callable[[str, list[str], list[list[str]]], None]) -> None:
    xtts = tiny_models.build_xtts(tmp / "voices-xtts")
    refs = tmp / "voice-refs"
    refs.mkdir()
    default = speak("This is the default reference voice.", refs / "default.wav")
    operator = speak("An operator's own studio recording.", refs / "studio.wav", voice="en-us+f2")
    sample = speak(SAMPLE, refs / "sample.wav", voice="en-gb").read_bytes()
    services = local_stack(
        asr_env={},
        gateway_env={},
        threads=threads,
        tts_env={
            "TTS_MODEL": str(xtts),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(tmp / "voices-home"),
            "TTS_DEFAULT_SPEAKER_WAV": str(default),
            "TTS_DEFAULT_SPEAKER_URL": "",
            "TTS_VOICES": json.dumps({"studio": str(operator)}),
            "TTS_VOICE_STORE": str(tmp / "voice-store"),
            "TTS_STREAM_CHUNK_SIZE": "10",
        },
    )
    start(services, tmp / "logs-voices")
    try:
        gw = httpx.Client(base_url=services[-1].url, timeout=600)
        gw.get("/v1/audio/voices").raise_for_status()  # loads the model
        uploads, ready = [], []
        for i in range(runs + 1):
            started = time.perf_counter()
            r = gw.post(
                "/v1/audio/voices",
                data={"name": f"bench {i}"},
                files={"audio_sample": ("sample.wav", sample, "audio/wav")},
            )
            r.raise_for_status()
            uploaded = time.perf_counter() - started
            first, _ = _first_byte(gw, r.json()["id"])
            uploads.append(uploaded)
            ready.append(uploaded + first)
            if i < runs:
                gw.delete(f"/v1/audio/voices/{r.json()['id']}").raise_for_status()
        clone = r.json()["id"]
        rows = [
            ["upload (decode, checks, latents, store)", f"{statistics.median(uploads[1:]):.3f}", "-"],
            ["upload to first byte of speech with it", f"{statistics.median(ready[1:]):.3f}", "-"],
        ]
        table(
            f"Voice upload: {len(sample) / 1024:.0f} KiB WAV ({len(sample) / 32000:.1f} s), tiny XTTS, "
            f"{threads} thread(s), median of {runs}",
            ["step", "seconds", ""],
            rows,
        )
        rows = []
        for label, voice in (
            ("built-in speaker", "Ana Random"),
            ("operator recording", "studio"),
            ("OpenAI name -> default reference", "alloy"),
            ("uploaded clone, by id", clone),
        ):
            _first_byte(gw, voice)  # warm: latents cached after first use
            pairs = [_first_byte(gw, voice) for _ in range(runs)]
            rows.append(
                [
                    label,
                    f"{statistics.median(p[0] for p in pairs):.3f}",
                    f"{statistics.median(p[1] for p in pairs):.3f}",
                ]
            )
        base = float(rows[0][1])
        for row in rows:
            row.append(f"{float(row[1]) / base:.2f}")
        table(
            f"Speech by voice: '{TEXT}' streamed as pcm through the gateway, tiny XTTS, {threads} thread(s), "
            f"median of {runs}",
            ["voice", "first byte s", "total s", "first byte vs built-in"],
            rows,
        )
    finally:
        for svc in reversed(services):
            svc.stop()
