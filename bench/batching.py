"""Cross-request batching on and off, same run, same audio: throughput (audio seconds per wall
second) and p50/p95 latency for 1, 4, 8 and 16 clients sending 5-10 s espeak-ng clips back to back
to Whisper base, with ASR_MAX_ACTIVE 8 and ASR_MAX_QUEUE 16 in both modes (only the batcher differs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from bench.load import CLIENTS, SENTENCES, Run, metric, row, transcribe
from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.espeak import speak


def clips(tmp: Path) -> list[tuple[bytes, float]]:
    """Two sentences each (5-10 s)."""
    voices = [sf.read(speak(s, tmp / f"batch-src{i}.wav"), dtype="float32")[0] for i, s in enumerate(SENTENCES)]
    out = []
    for i in range(len(voices)):
        joined = np.concatenate([voices[i], np.zeros(4000, np.float32), voices[(i + 1) % len(voices)]])
        path = tmp / f"batch{i}.wav"
        sf.write(path, joined, 16000)
        out.append((path.read_bytes(), joined.size / 16000))
    return out


def bench_batching(tmp: Path, threads: int, seconds: float, batch: int, table) -> None:
    audio = clips(tmp)
    rows, throughput = [], {}
    for batching in (False, True):
        asr, tts, gw = local_stack(
            asr_env={
                "ASR_MODELS": whisper_models(),
                "ASR_UNLOAD_POLICY": "never",
                "ASR_MAX_ACTIVE": "8",
                "ASR_MAX_QUEUE": "16",
                "ASR_BATCH_SIZE": str(batch),
                "ASR_CROSS_REQUEST_BATCHING": str(batching).lower(),
            },
            tts_env={},
            gateway_env={},
            threads=threads,
        )
        start([asr, tts, gw], tmp / f"logs-batching-{batching}")
        try:
            send = transcribe(gw.url, audio)
            Run(send, 1, 0.1).go()  # warm the model
            for clients in CLIENTS:
                before = (
                    metric(asr, "speech_asr_queue_wait_seconds_sum"),
                    metric(asr, "speech_asr_queue_wait_seconds_count"),
                )
                segments = (
                    metric(asr, "speech_asr_batch_segments_sum"),
                    metric(asr, "speech_asr_batch_segments_count"),
                )
                run = Run(send, clients, seconds)
                wall = run.go()
                throughput[batching, clients] = run.audio / wall
                cells = row(
                    "on" if batching else "off", clients, run, wall, predictor=asr, prefix="speech_asr", before=before
                )
                dispatched = metric(asr, "speech_asr_batch_segments_count") - segments[1]
                per_call = (
                    (metric(asr, "speech_asr_batch_segments_sum") - segments[0]) / dispatched
                    if dispatched
                    else float("nan")
                )
                rows.append([*cells, f"{per_call:.2f}" if batching else "-"])
        finally:
            for svc in (gw, tts, asr):
                svc.stop()
    for r in rows:
        if r[0] == "on":
            clients = int(r[1])
            r.append(f"{throughput[True, clients] / max(throughput[False, clients], 1e-9):.2f}")
        else:
            r.append("-")
    table(
        f"Cross-request batching: clients sending 5-10 s espeak-ng clips back to back for {seconds:.0f} s to Whisper "
        f"base int8, {threads} thread(s), batch size {batch}, ASR max_active 8, max_queue 16; off = each request "
        "decodes alone under the model's lock",
        [
            "batching",
            "clients",
            "ok",
            "429 share",
            "errors",
            "req/s",
            "audio s/s",
            "p50 s",
            "p95 s",
            "queue wait s",
            "segments per call",
            "audio s/s on/off",
        ],
        rows,
    )
