"""``make bench``: the same work measured side by side in one run, printed as tables.

Load: 1, 4, 8 and 16 clients against small queues (bench/load.py); memory: each predictor's peak for
its largest request.

ASR: espeak-ng recordings of distinct sentences (10 s and 60 s) through (a) bare WhisperX in this
process, (b) the ASR predictor over KServe v2, (c) the gateway with the openai client; warm models,
median of N runs; then what OpenAI's temperature fallback costs on speech that repeats itself.
TTS: the tiny test VITS through the predictor and the gateway, per response format.
Voices: upload-to-ready time of a clone, first byte per kind of voice (bench/voices.py).
Realtime: first delta and completed transcript per delay and per number of sessions, WER, CPU (bench/realtime.py).
Speech stream: first audio from an LLM-like text stream, WebSocket vs POST per sentence, 1 and 4
sessions; what word timings cost (bench/speech_stream.py).
Translation: end of a spoken sentence to its first translated audio, 1 and 2 sessions, and where the
time goes (bench/translation.py).
Health: a predictor's /healthz under 16 speech clients per unload policy (bench/health.py).
Batching: cross-request batching on and off at 1-16 clients (bench/batching.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import openai

from bench import batching, health, load, realtime, speech, speech_stream, translation, voices
from scripts.devstack import ROOT, base_env, local_stack
from services.common import v2wire
from tests.conftest import start, whisper_models
from tests.support import tiny_models

TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank. Please schedule a meeting "
    "with the design team on Thursday afternoon."
)


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

    pipe = whisperx.load_model(
        str(ROOT / ".models" / "faster-whisper-base"), "cpu", compute_type="int8", threads=threads
    )
    aligner = whisperx.load_align_model("en", "cpu", model_name=str(aligner_dir))

    beam = pipe.options

    def run(wav: Path, mode: str):
        audio = decode(wav.read_bytes(), 7200)
        pipe.options = replace(beam, beam_size=1) if mode == "logprobs" else beam  # logprobs decode greedily
        result = pipe.transcribe(audio, batch_size=batch, language="en")
        if mode == "words":
            whisperx.align(result["segments"], *aligner, audio, "cpu")

    return run


def predictor_call(url: str, wav: Path):
    audio = wav.read_bytes()
    pooled = httpx.Client(base_url=url, timeout=600)  # same pooling as the gateway's client

    def call():
        header = v2wire.InferRequestHeader(
            str(uuid.uuid4()),
            {"model": "whisper-1", "language": "en"},
            binary_inputs=[v2wire.BinaryInput.bytes_elements("audio", [len(audio)])],
        )
        head = header.encode()
        body = head + v2wire.element_prefix(len(audio)) + audio
        r = pooled.post("/v2/models/asr/infer", content=body, headers=v2wire.request_headers(head, len(body)))
        r.raise_for_status()

    return call


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))


def long_recording(tmp: Path, seconds: float, *, varied: bool = True) -> Path:
    """At least ``seconds`` of espeak-ng speech: distinct sentences, or ``TEXT`` over and over."""
    import soundfile as sf

    out = tmp / f"speech-{int(seconds)}s{'' if varied else '-repeating'}.wav"
    sf.write(out, speech.recording(tmp, seconds, varied=varied, text=TEXT), 16000)
    return out


MODES = {
    "text": {},
    "words": {"response_format": "verbose_json", "timestamp_granularities": ["word"]},
    "logprobs": {"include": ["logprobs"]},
}


def bench_asr(tmp: Path, runs: int, threads: int, batch: int) -> None:
    inputs = {label: long_recording(tmp, secs) for label, secs in (("10 s", 10), ("60 s", 60))}
    repeating = long_recording(tmp, 60, varied=False)
    aligner = tiny_models.build_wav2vec2(tmp / "wav2vec2")
    services = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_BATCH_SIZE": str(batch),
            "ASR_ALIGN_MODELS": json.dumps({"en": str(aligner)}),
        },
        tts_env={},
        gateway_env={},
        threads=threads,
    )
    start(services, tmp / "logs-asr")
    gateway, predictor = {}, {}
    try:
        client = openai.OpenAI(base_url=f"{services[-1].url}/v1", api_key="x", max_retries=0, timeout=600)
        for label, wav in inputs.items():
            predictor[label] = median_time(predictor_call(services[0].url, wav), runs)
            for mode, extra in MODES.items():
                gateway[label, mode] = median_time(
                    lambda wav=wav, extra=extra: client.audio.transcriptions.create(
                        model="whisper-1", file=wav.read_bytes(), language="en", **extra
                    ),
                    runs,
                )
        fallback = []
        for label, wav in (("distinct sentences", inputs["60 s"]), ("one passage over and over", repeating)):
            before = load.metric(services[0], "speech_asr_fallback_decodes_total")
            seconds = median_time(predictor_call(services[0].url, wav), runs)
            redecodes = (load.metric(services[0], "speech_asr_fallback_decodes_total") - before) / (runs + 1)
            fallback.append([f"{sf_seconds(wav):.1f} s, {label}", f"{seconds:.3f}", f"{redecodes:.0f}"])
    finally:
        for svc in reversed(services):
            svc.stop()
    bare = bare_whisperx(threads, batch, aligner)  # in-process last, alone on the cores as the services were
    rows = []
    for label, wav in inputs.items():
        seconds = sf_seconds(wav)
        for mode in MODES:
            a = median_time(lambda wav=wav, mode=mode: bare(wav, mode), runs)
            c = gateway[label, mode]
            b = f"{predictor[label]:.3f}" if mode == "text" else "-"
            rows.append([f"{seconds:.1f} s", mode, f"{a:.3f}", b, f"{c:.3f}", f"{c / seconds:.3f}", f"{c / a:.2f}"])
    table(
        f"ASR: espeak-ng speech, Whisper base int8, {threads} thread(s), batch {batch}, warm models, median of "
        f"{runs}. words: + alignment (tiny random wav2vec2: the pipeline, not a real aligner); logprobs: "
        "include[]=logprobs, greedy decoding, so (a) decodes greedily too",
        ["audio", "mode", "(a) bare WhisperX s", "(b) predictor s", "(c) gateway s", "RTF (c)", "(c)/(a)"],
        rows,
    )
    table(
        "ASR temperature fallback (OpenAI's rule, on by default; bare WhisperX has none): speech that repeats "
        "itself decodes to text that compresses like a repetition loop, so each 30 s window is re-decoded at up "
        f"to 5 higher temperatures. Predictor, text, median of {runs}",
        ["audio", "(b) predictor s", "fallback re-decodes per request"],
        fallback,
    )


def sf_seconds(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def first_byte_and_total(open_stream) -> tuple[float, float]:
    """Seconds to the first body byte and to the end, for a callable returning a streamed response."""
    started = time.perf_counter()
    with open_stream() as response:
        response.raise_for_status()
        first: float | None = None
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
    end = time.perf_counter() - started
    return (end if first is None else first), end


def median_pair(fn, runs: int) -> tuple[float, float]:
    fn()
    pairs = [fn() for _ in range(runs)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def bench_tts_model(tmp: Path, label: str, model_dir: Path, voice: str, *, runs: int, threads: int) -> list[list[str]]:
    services = local_stack(
        asr_env={},
        tts_env={
            "TTS_MODEL": str(model_dir),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(tmp / f"home-{label}"),
            "TTS_STREAM_CHUNK_SIZE": "10",
        },
        gateway_env={},
        threads=threads,
    )
    start(services, tmp / f"logs-{label}")
    rows = []
    try:
        tts = httpx.Client(base_url=services[1].url, timeout=600)
        gw = httpx.Client(base_url=services[-1].url, timeout=600)
        body = {
            "id": "b",
            "parameters": {"voice": voice, "binary_data_output": True},
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}],
        }
        direct = median_pair(
            lambda: first_byte_and_total(lambda: tts.stream("POST", "/v2/models/tts/infer_stream", json=body)), runs
        )
        whole = median_time(lambda: tts.post("/v2/models/tts/infer", json=body).raise_for_status(), runs)
        rows.append([label, "predictor f32 (stream)", f"{direct[0]:.3f}", f"{direct[1]:.3f}", f"{whole:.3f}", "1.00"])
        for fmt in ("pcm", "mp3", "opus", "aac", "wav", "flac"):
            req = {"model": "tts-1", "voice": voice, "input": TEXT, "response_format": fmt, "stream": True}
            streamed = median_pair(
                lambda req=req: first_byte_and_total(lambda: gw.stream("POST", "/v1/audio/speech", json=req)), runs
            )
            whole_req = req | {"stream": False}
            full = median_time(
                lambda whole_req=whole_req: gw.post("/v1/audio/speech", json=whole_req).raise_for_status(), runs
            )
            rows.append(
                [
                    label,
                    f"gateway {fmt}",
                    f"{streamed[0]:.3f}",
                    f"{streamed[1]:.3f}",
                    f"{full:.3f}",
                    f"{streamed[0] / direct[0]:.2f}",
                ]
            )
    finally:
        for svc in reversed(services):
            svc.stop()
    return rows


def bench_tts(tmp: Path, runs: int, threads: int) -> None:
    vits = tiny_models.build_vits(tmp / "vits", ["alloy"])
    xtts = tiny_models.build_xtts(tmp / "xtts")
    rows = bench_tts_model(tmp, "VITS", vits, "alloy", runs=runs, threads=threads)
    rows += bench_tts_model(tmp, "XTTS", xtts, "Ana Random", runs=runs, threads=threads)
    table(
        f"TTS: {len(TEXT)} characters (2 sentences), tiny random test models (VITS: sentence by sentence; "
        f"XTTS: inference_stream), {threads} thread(s), median of {runs}",
        ["model", "path", "first byte s", "streamed total s", "whole file s", "first byte vs predictor"],
        rows,
    )
    bench_encoding(runs)


def bench_encoding(runs: int) -> None:
    """In-process PyAV encoding of 10 s of 24 kHz audio fed in 100 ms chunks, per format."""
    import numpy as np

    from services.gateway.audio_encoding import AudioEncoder

    rate, seconds = 24000, 10.0
    t = np.arange(int(rate * seconds)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    chunks = np.array_split(audio, int(seconds * 10))
    rows = []
    for fmt in ("pcm", "wav", "mp3", "opus", "aac", "flac"):

        def encode(fmt=fmt):
            enc = AudioEncoder(fmt, rate, rate, streaming=True)
            first, size = None, 0
            started = time.perf_counter()
            for chunk in chunks:
                out = enc.feed(chunk)
                if out and first is None:
                    first = time.perf_counter() - started
                size += len(out)
            return first, size + len(enc.finish())

        total = median_time(encode, runs)
        first, size = encode()
        rows.append([fmt, f"{total / seconds * 1000:.2f}", f"{first * 1000:.2f}", f"{size / seconds / 1000:.1f}"])
    table(
        f"Encoding (PyAV, streaming, 24 kHz mono, 100 ms chunks), median of {runs}",
        ["format", "ms per s of audio", "first bytes after ms", "kB per s"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--only",
        choices=["asr", "tts", "voices", "realtime", "stream", "translation", "load", "health", "batching", "memory"],
        help="run one benchmark",
    )
    parser.add_argument("--load-seconds", type=float, default=20, help="duration of each load step")
    parser.add_argument("--long-minutes", type=int, default=60, help="length of the long recording (memory)")
    args = parser.parse_args()
    os.environ.update(base_env(args.threads, offline=True))  # the in-process WhisperX run, as the services
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "asr"):
            bench_asr(Path(tmp), args.runs, args.threads, args.batch)
        if args.only in (None, "tts"):
            bench_tts(Path(tmp), args.runs, args.threads)
        if args.only in (None, "voices"):
            voices.bench_voices(Path(tmp), args.runs, args.threads, table)
        if args.only in (None, "realtime"):
            realtime.bench_realtime(Path(tmp), args.runs, args.threads, args.batch, table)
        if args.only in (None, "stream"):
            speech_stream.bench_speech_stream(Path(tmp), args.runs, args.threads, table)
        if args.only in (None, "translation"):
            translation.bench_translation(Path(tmp), args.runs, args.threads, table)
        if args.only in (None, "load"):
            load.bench_load(Path(tmp), args.threads, args.load_seconds, table)
        if args.only in (None, "health"):
            health.bench_health(Path(tmp), args.threads, args.load_seconds, table)
        if args.only in (None, "batching"):
            batching.bench_batching(Path(tmp), args.threads, args.load_seconds, args.batch, table)
        if args.only in (None, "memory"):
            load.bench_memory(Path(tmp), args.threads, args.long_minutes, table)


if __name__ == "__main__":
    main()
