"""Cross-request batching on the real stack (Whisper base, CPU): concurrent requests with different
languages, tasks, prompts, formats and decoding modes give exactly the texts they give one at a time
(deterministic decoding: beam search, or greedy for logprobs, with the temperature fallback off);
the batcher really shared calls; a client that leaves mid-batch disturbs no one; streamed deltas of
batched requests arrive in order."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from scripts.devstack import local_stack
from tests.conftest import SENTENCES, start, whisper_models
from tests.support.espeak import speak

GERMAN = "Guten Morgen, wie geht es dir heute? Das Wetter ist schön."


@pytest.fixture(scope="module")
def batching_stack(workdir):
    services = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_BATCH_SIZE": "8",
            "ASR_MAX_ACTIVE": "8",
            "ASR_MAX_QUEUE": "16",
            "ASR_TEMPERATURE_FALLBACK": "false",
        },
        tts_env={},
        gateway_env={},
    )
    start(services, workdir / "logs" / "batching")
    yield services
    for svc in reversed(services):
        svc.stop()


@pytest.fixture(scope="module")
def clips(workdir, spoken) -> dict[str, bytes]:
    german = speak(GERMAN, workdir / "german.wav", voice="de")
    return {"german": german.read_bytes(), **{f"en{i}": spoken[s].read_bytes() for i, s in enumerate(SENTENCES)}}


REQUESTS = [  # (name, clip, form fields)
    ("json", "en0", {"response_format": "json"}),
    ("verbose with prompt", "en1", {"response_format": "verbose_json", "prompt": "Meeting notes, Thursday."}),
    ("german", "german", {"language": "de", "response_format": "text"}),
    ("translation", "german", {"task": "translate", "response_format": "json"}),
    ("logprobs", "en2", {"response_format": "json", "include[]": "logprobs"}),
    ("detected language", "en3", {"response_format": "verbose_json"}),
    ("srt", "en4", {"response_format": "srt", "language": "en"}),
]


def ask(url: str, clip: bytes, fields: dict) -> str:
    fields = dict(fields)
    route = "translations" if fields.pop("task", None) == "translate" else "transcriptions"
    r = httpx.post(
        f"{url}/v1/audio/{route}", files={"file": ("a.wav", clip)}, data={"model": "whisper-1", **fields}, timeout=600
    )
    assert r.status_code == 200, r.text
    if r.headers["content-type"].startswith("application/json"):
        doc = r.json()
        return json.dumps(
            {
                "text": doc["text"],
                "segments": [s["text"] for s in doc.get("segments", [])],
                "language": doc.get("language"),
                "logprobs": len(doc.get("logprobs") or []),
            }
        )
    return r.text


def batch_histogram(asr_url: str) -> dict[str, float]:
    text = httpx.get(f"{asr_url}/metrics", timeout=10).text
    return {
        s.labels.get("le", s.name): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("speech_asr_batch_segments")
    }


def test_concurrent_requests_give_the_texts_they_give_alone(batching_stack, clips):
    asr, _, gw = batching_stack
    alone = {name: ask(gw.url, clips[clip], fields) for name, clip, fields in REQUESTS}
    before = batch_histogram(asr.url)
    together: dict[str, str] = {}
    barrier = threading.Barrier(len(REQUESTS))

    def run(name: str, clip: str, fields: dict) -> None:
        barrier.wait()
        together[name] = ask(gw.url, clips[clip], fields)

    threads = [threading.Thread(target=run, args=r) for r in REQUESTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert "morgen" in alone["german"].lower() and json.loads(alone["translation"])["text"]  # (base translates poorly)
    after = batch_histogram(asr.url)
    dispatches = after["speech_asr_batch_segments_count"] - before["speech_asr_batch_segments_count"]
    single = after["1.0"] - before["1.0"]
    assert dispatches < len(REQUESTS) and single < dispatches, (before, after)  # calls were shared


def test_a_client_that_leaves_mid_batch_disturbs_no_one(batching_stack, clips, spoken):
    _, _, gw = batching_stack
    long_audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in spoken.values()] * 4)
    long_path = gw.log_path.parent / "long.wav"
    sf.write(long_path, long_audio, 16000)
    expected = ask(gw.url, clips["en0"], {"response_format": "json"})

    def leave() -> None:
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/audio/transcriptions",
            files={"file": long_path.read_bytes()},
            data={"model": "whisper-1", "stream": "true"},
            timeout=600,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    return  # first delta seen: leave while the rest is queued

    leaver = threading.Thread(target=leave)
    leaver.start()
    result = ask(gw.url, clips["en0"], {"response_format": "json"})
    leaver.join(300)
    assert result == expected


def test_streamed_deltas_of_batched_requests_arrive_in_order(batching_stack, spoken):
    _, _, gw = batching_stack
    long_audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in spoken.values()])
    path = gw.log_path.parent / "five-sentences.wav"
    sf.write(path, np.concatenate([long_audio, np.zeros(16000, np.float32), long_audio]), 16000)
    outcomes: list[tuple[str, str]] = []

    def stream() -> None:
        deltas, done = [], ""
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/audio/transcriptions",
            files={"file": path.read_bytes()},
            data={"model": "whisper-1", "stream": "true", "language": "en"},
            timeout=600,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event["type"] == "transcript.text.delta":
                        deltas.append(event["delta"])
                    elif event["type"] == "transcript.text.done":
                        done = event["text"]
        outcomes.append(("".join(deltas), done))

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 3
    for joined, done in outcomes:
        assert joined.strip() == done and "lazy dog" in done.lower()
    assert len({done for _, done in outcomes}) == 1
