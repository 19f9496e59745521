"""``make bench``: the same work measured side by side in one run, printed as tables.

ASR: one espeak-ng recording (about 11 s) through (a) bare WhisperX in this process, (b) the ASR
predictor over KServe v2, (c) the gateway with the openai client; warm models, median of N runs.
TTS: the tiny test VITS through the predictor and the gateway, per response format.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import openai

from scripts.devstack import ROOT, local_stack
from services.common import v2wire
from tests.conftest import start, whisper_models
from tests.support import tiny_models
from tests.support.speech import speak

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank. Please schedule a meeting "
        "with the design team on Thursday afternoon.")


def median_time(fn, runs: int) -> float:
    fn()  # warm-up (model load, first-call costs)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_whisperx(threads: int, batch: int, aligner_dir: Path):
    """Transcribe (and optionally align) in this process, the way the engine calls WhisperX."""
    import whisperx
    from services.asr.audio import decode

    pipe = whisperx.load_model(str(ROOT / ".models" / "faster-whisper-base"), "cpu", compute_type="int8",
                               threads=threads)
    aligner = whisperx.load_align_model("en", "cpu", model_name=str(aligner_dir))

    def run(wav: Path, align: bool):
        audio = decode(wav.read_bytes())
        result = pipe.transcribe(audio, batch_size=batch, language="en")
        if align:
            whisperx.align(result["segments"], *aligner, audio, "cpu")
    return run


def predictor_call(url: str, wav: Path):
    audio = wav.read_bytes()
    pooled = httpx.Client(base_url=url, timeout=600)  # same pooling as the gateway's client

    def call():
        header = v2wire.InferRequestHeader(str(uuid.uuid4()), {"model": "whisper-1"})
        header.binary_inputs.append(v2wire.BinaryInput("audio", "BYTES", [1], 4 + len(audio)))
        head = header.encode()
        body = head + v2wire.bytes_element(audio) + audio
        r = pooled.post("/v2/models/asr/infer", content=body, headers=v2wire.request_headers(head))
        r.raise_for_status()
    return call


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def long_recording(tmp: Path, seconds: float) -> Path:
    """espeak-ng sentences joined until the recording is at least ``seconds`` long."""
    import numpy as np
    import soundfile as sf

    parts, total, i = [], 0.0, 0
    while total < seconds:
        clip, _ = sf.read(speak(f"{TEXT} Sentence number {i}.", tmp / f"part{i}.wav"), dtype="float32")
        parts += [clip, np.zeros(4000, np.float32)]
        total += (len(clip) + 4000) / 16000
        i += 1
    out = tmp / f"speech-{int(seconds)}s.wav"
    sf.write(out, np.concatenate(parts), 16000)
    return out


def bench_asr(tmp: Path, runs: int, threads: int, batch: int) -> None:
    inputs = {label: long_recording(tmp, secs) for label, secs in (("10 s", 10), ("60 s", 60))}
    aligner = tiny_models.build_wav2vec2(tmp / "wav2vec2")
    services = local_stack(asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never",
                                    "ASR_BATCH_SIZE": str(batch), "ASR_ALIGN_MODELS": json.dumps({"en": str(aligner)})},
                           tts_env={}, gateway_env={}, threads=threads)
    start(services, tmp / "logs-asr")
    gateway, predictor = {}, {}
    try:
        client = openai.OpenAI(base_url=f"{services[-1].url}/v1", api_key="x", max_retries=0, timeout=600)
        for label, wav in inputs.items():
            predictor[label] = median_time(predictor_call(services[0].url, wav), runs)
            for align in (False, True):
                extra = {"response_format": "verbose_json", "timestamp_granularities": ["word"]} if align else {}
                gateway[label, align] = median_time(lambda: client.audio.transcriptions.create(
                    model="whisper-1", file=wav.read_bytes(), language="en", **extra), runs)
    finally:
        for svc in reversed(services):
            svc.stop()
    bare = bare_whisperx(threads, batch, aligner)  # in-process last, alone on the cores as the services were
    rows = []
    for label, wav in inputs.items():
        seconds = sf_seconds(wav)
        for align in (False, True):
            a = median_time(lambda: bare(wav, align), runs)
            c = gateway[label, align]
            b = f"{predictor[label]:.3f}" if not align else "-"
            rows.append([f"{seconds:.1f} s", "yes" if align else "no", f"{a:.3f}", b, f"{c:.3f}",
                         f"{c / seconds:.3f}", f"{c / a:.2f}"])
    table(f"ASR: espeak-ng speech, Whisper base int8, {threads} thread(s), batch {batch}, warm models, median of "
          f"{runs} (alignment: tiny random wav2vec2, so it measures the pipeline, not a real aligner)",
          ["audio", "align", "(a) bare WhisperX s", "(b) predictor s", "(c) gateway s", "RTF (c)", "(c)/(a)"], rows)


def sf_seconds(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def bench_tts(tmp: Path, runs: int, threads: int) -> None:
    vits = tiny_models.build_vits(tmp / "vits", ["alloy"])
    services = local_stack(asr_env={}, tts_env={"TTS_MODEL": str(vits), "TTS_UNLOAD_POLICY": "never",
                                                "TTS_HOME": str(tmp / "tts-home")}, gateway_env={}, threads=threads)
    start(services, tmp / "logs-tts")
    try:
        client = openai.OpenAI(base_url=f"{services[-1].url}/v1", api_key="x", max_retries=0)
        header = {"id": "b", "parameters": {"binary_data_output": True},
                  "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]}
        pooled = httpx.Client(base_url=services[1].url, timeout=600)  # same pooling as the gateway's client
        direct = lambda: pooled.post("/v2/models/tts/infer", json=header).raise_for_status()
        base = median_time(direct, runs)
        rows = [["predictor (float32 PCM)", f"{base:.3f}", "1.00"]]
        for fmt in ("pcm", "wav", "mp3", "opus", "aac", "flac"):
            t = median_time(lambda: client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                               response_format=fmt).content, runs)
            rows.append([f"gateway {fmt}", f"{t:.3f}", f"{t / base:.2f}"])
    finally:
        for svc in reversed(services):
            svc.stop()
    table(f"TTS: tiny VITS (test model), {len(TEXT)} characters, whole responses, median of {runs}",
          ["path", "wall s", "ratio vs predictor"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_asr(Path(tmp), args.runs, args.threads, args.batch)
        bench_tts(Path(tmp), args.runs, args.threads)


if __name__ == "__main__":
    main()
