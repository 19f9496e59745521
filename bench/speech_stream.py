"""Speech for voice agents: three sentences written as a language model writes them (3 characters per
message, 20 ms apart) to WS /v1/audio/speech/stream (sentence units, PCM as it is made), against the
same text as one POST /v1/audio/speech per sentence sent when the sentence is complete (streamed
PCM); one and four sessions at once, tiny XTTS and tiny VITS. Then what word timings cost: POST
/v1/audio/speech whole, with and without word_timestamps, per second of audio (Whisper base's aligner)."""

from __future__ import annotations

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

TEXT = [
    "The train to the city leaves at nine.",
    "Please bring a warm coat and an umbrella.",
    "We will meet again at the station afterwards.",
]
PIECE, GAP = 3, 0.02


def websocket_run(url: str, voice: str) -> tuple[float, float]:
    """(first text piece -> first audio frame, input.done -> session.done), seconds."""
    first_audio: list[float] = []
    done = threading.Event()
    with connect(url.replace("http://", "ws://") + "/v1/audio/speech/stream", max_size=None) as ws:

        def listen() -> None:
            for message in ws:
                if isinstance(message, bytes):
                    if not first_audio:
                        first_audio.append(time.perf_counter())
                elif json.loads(message)["type"] == "session.done":
                    done.set()
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        ws.send(json.dumps({"type": "session.config", "voice": voice, "response_format": "pcm", "stream_audio": True,
                            "split_granularity": "sentence"}))  # fmt: skip
        text = " ".join(TEXT)
        began = time.perf_counter()
        for i in range(0, len(text), PIECE):
            ws.send(json.dumps({"type": "input.text", "text": text[i : i + PIECE]}))
            time.sleep(GAP)
        ended = time.perf_counter()
        ws.send(json.dumps({"type": "input.done"}))
        done.wait(600)
        finished = time.perf_counter()
        listener.join(5)
    return first_audio[0] - began, finished - ended


def post_run(url: str, voice: str) -> tuple[float, float]:
    """The same text as it is written, one streamed POST per sentence once the sentence is complete (in
    order, as a client would play them): (first piece -> first audio byte, last piece -> last byte)."""
    began = time.perf_counter()
    first: float | None = None
    with httpx.Client(base_url=url, timeout=600) as http:
        written = 0.0
        for sentence in TEXT:
            written += len(sentence) / PIECE * GAP  # when an LLM writing at that pace finishes it
            time.sleep(max(0.0, began + written - time.perf_counter()))
            body = {"model": "tts-1", "voice": voice, "input": sentence, "response_format": "pcm", "stream": True}
            with http.stream("POST", "/v1/audio/speech", json=body) as r:
                for _ in r.iter_raw():
                    if first is None:
                        first = time.perf_counter() - began
    return first or 0.0, time.perf_counter() - (began + written)


def concurrent(runner: Callable[[str, str], tuple[float, float]], url: str, voice: str, sessions: int) -> list[tuple]:
    with ThreadPoolExecutor(sessions) as pool:
        return list(pool.map(lambda _: runner(url, voice), range(sessions)))


def bench_speech_stream(
    tmp: Path, runs: int, threads: int, table: Callable[[str, list[str], list[list[str]]], None]
) -> None:
    models = {"XTTS": (tiny_models.build_xtts(tmp / "stream-xtts"), "Ana Random"),
              "VITS": (tiny_models.build_vits(tmp / "stream-vits", ["alloy"]), "alloy")}  # fmt: skip
    rows, timing_rows = [], []
    for name, (model, voice) in models.items():
        services = local_stack(
            asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_WORD_TIMESTAMPS": "whisper"},
            tts_env={"TTS_MODEL": str(model), "TTS_UNLOAD_POLICY": "never", "TTS_HOME": str(tmp / f"stream-{name}")},
            gateway_env={},
            threads=threads,
        )
        start(services, tmp / f"logs-stream-{name}")
        try:
            url = services[-1].url
            post_run(url, voice)  # warm
            for sessions in (1, 4):
                for path, runner in (("WebSocket", websocket_run), ("POST per sentence", post_run)):
                    samples = [s for _ in range(runs) for s in concurrent(runner, url, voice, sessions)]
                    rows.append([name, str(sessions), path, f"{statistics.median(s[0] for s in samples):.3f}",
                                 f"{statistics.median(s[1] for s in samples):.3f}"])  # fmt: skip
            timing_rows.append([name, *word_timing_cost(url, voice, runs)])
        finally:
            for svc in reversed(services):
                svc.stop()
    table(
        f"Speech from a text stream: {sum(len(t) for t in TEXT)} characters in 3 sentences written {PIECE} characters "
        f"per {GAP * 1000:.0f} ms, tiny random models, {threads} thread(s), median of {runs} run(s) per session",
        ["model", "sessions", "path", "first piece -> first audio s", "text done -> last audio s"],
        rows,
    )
    table(
        f"Word timings: POST /v1/audio/speech (wav, whole) of the 3 sentences with and without word_timestamps, "
        f"aligned by Whisper base's cross-attention, {threads} thread(s), median of {runs}",
        ["model", "without s", "with s", "audio s", "extra s per audio s"],
        timing_rows,
    )


def word_timing_cost(url: str, voice: str, runs: int) -> list[str]:
    body = {"model": "tts-1", "voice": voice, "input": " ".join(TEXT), "response_format": "wav"}
    with httpx.Client(base_url=url, timeout=600) as http:
        http.post("/v1/audio/speech", json=body | {"word_timestamps": True}).raise_for_status()  # warm the aligner
        plain, timed, seconds = [], [], 0.0
        for _ in range(runs):
            began = time.perf_counter()
            http.post("/v1/audio/speech", json=body).raise_for_status()
            plain.append(time.perf_counter() - began)
            began = time.perf_counter()
            r = http.post("/v1/audio/speech", json=body | {"word_timestamps": True})
            r.raise_for_status()
            timed.append(time.perf_counter() - began)
            seconds = r.json()["duration"]
    without, with_ = statistics.median(plain), statistics.median(timed)
    return [f"{without:.3f}", f"{with_:.3f}", f"{seconds:.2f}", f"{(with_ - without) / seconds:.3f}"]
