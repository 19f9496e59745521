"""The real stack when clients leave, predictors die, and pods are stopped: work for a departed client
stops (seen in the predictor's /status and counters, not by sleeping), a killed predictor gives a clean
error or an in-band error event, SIGTERM lets the request in flight finish while refusing new ones."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.errors import error_of


@pytest.fixture(scope="module")
def long_speech(workdir, spoken) -> Path:
    """About a minute of speech: every test sentence three times, with pauses."""
    pause = np.zeros(8000, np.float32)
    parts = [x for _ in range(3) for path in spoken.values() for x in (sf.read(path, dtype="float32")[0], pause)]
    out = workdir / "long-speech.wav"
    sf.write(out, np.concatenate(parts), 16000)
    return out


@pytest.fixture(scope="module")
def rig(workdir, tiny, spoken):
    asr, tts, gw = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_BATCH_SIZE": "2",
            "ASR_SHUTDOWN_GRACE_SECONDS": "60",
        },
        tts_env={
            "TTS_MODEL": str(tiny["xtts"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(workdir / "tts-home-resilience"),
            "TTS_DEFAULT_SPEAKER_URL": "",
            "TTS_STREAM_CHUNK_SIZE": "4",
        },
        gateway_env={},
    )
    logs = workdir / "logs" / "resilience"
    start([asr, tts, gw], logs)
    warm(gw, next(iter(spoken.values())))
    yield asr, tts, gw, logs
    for svc in (gw, tts, asr):
        svc.stop()


def warm(gw, wav: Path) -> None:
    """Load both models, so the tests see model work, not model loading."""
    r = httpx.post(
        f"{gw.url}/v1/audio/transcriptions", files={"file": wav.read_bytes()}, data={"model": "whisper-1"}, timeout=300
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{gw.url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "wav"},
        timeout=300,
    )
    assert r.status_code == 200, r.text


def restart(svc, logs: Path, name: str) -> None:
    svc.stop()
    svc.name = name  # a fresh log file per start
    start([svc], logs)


def status(svc) -> dict:
    return httpx.get(f"{svc.url}/status", timeout=5).json()


def counter(svc, name: str) -> float:
    text = httpx.get(f"{svc.url}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def busy(svc) -> bool:
    return status(svc)["admission"]["active"] > 0


def in_thread(fn):
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_client_that_leaves_stops_the_transcription(rig, long_speech):
    asr, _, gw, _ = rig
    stopped = counter(asr, "speech_asr_work_stopped_total")
    left = counter(gw, "speech_gateway_requests_cancelled_total")
    impatient = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=2.5)
    with pytest.raises(openai.APITimeoutError):  # gives up long before a minute of speech is transcribed
        impatient.audio.transcriptions.create(model="whisper-1", file=long_speech.open("rb"))
    wait_for(
        lambda: counter(asr, "speech_asr_work_stopped_total") > stopped, timeout=30, what="the model work to stop early"
    )
    wait_for(lambda: not busy(asr), timeout=10, what="the ASR place to be free")
    assert counter(gw, "speech_gateway_requests_cancelled_total") > left
    assert counter(asr, "speech_asr_cancelled_total") >= 1


def test_a_client_that_leaves_a_speech_stream_stops_synthesis(rig):
    _, tts, gw, _ = rig
    before = counter(tts, "speech_tts_work_stopped_total")
    body = {"model": "tts-1", "voice": "alloy", "input": "This sentence goes on. " * 60, "response_format": "pcm"}
    with httpx.stream("POST", f"{gw.url}/v1/audio/speech", json=body, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_bytes())  # the first audio arrives, then the client leaves
    wait_for(lambda: counter(tts, "speech_tts_work_stopped_total") > before, timeout=30, what="synthesis to stop")
    wait_for(lambda: not busy(tts), timeout=30, what="the TTS place to be free")


def test_sigterm_lets_the_request_in_flight_finish_and_refuses_new_ones(rig, spoken, long_speech):
    asr, _, gw, logs = rig
    thread, outcome = in_thread(
        lambda: httpx.post(
            f"{gw.url}/v1/audio/transcriptions",
            files={"file": long_speech.read_bytes()},
            data={"model": "whisper-1"},
            timeout=300,
        )
    )
    wait_for(lambda: busy(asr), what="the transcription to start")
    asr.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: httpx.get(f"{asr.url}/readyz").status_code == 503, timeout=10, what="not ready")
    wav = next(iter(spoken.values()))
    refused = httpx.post(
        f"{gw.url}/v1/audio/transcriptions", files={"file": wav.read_bytes()}, data={"model": "whisper-1"}, timeout=60
    )
    assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
    assert "shutting down" in refused.json()["error"]["message"]
    thread.join(300)
    response = outcome["value"]
    assert response.status_code == 200 and "lazy dog" in response.json()["text"].lower()
    assert asr.proc.wait(30) == 0  # exits on its own once drained
    restart(asr, logs, "asr-after-sigterm")


def test_killed_asr_mid_request_is_a_clean_502_and_the_next_request_works(rig, spoken, long_speech):
    asr, _, gw, logs = rig
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=300)
    thread, outcome = in_thread(
        lambda: client.audio.transcriptions.create(model="whisper-1", file=long_speech.open("rb"))
    )
    wait_for(lambda: busy(asr), what="the transcription to start")
    asr.proc.kill()
    thread.join(60)
    err = outcome["error"]
    assert isinstance(err, openai.InternalServerError) and err.status_code == 502
    assert error_of(err)["message"].startswith("ASR backend request failed")
    restart(asr, logs, "asr-after-kill")
    wav = next(iter(spoken.values()))
    assert "dog" in client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb")).text


def test_killed_asr_mid_stream_ends_the_sse_with_an_error_event(rig, long_speech):
    asr, _, gw, logs = rig
    events = []
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/audio/transcriptions",
        files={"file": long_speech.read_bytes()},
        data={"model": "whisper-1", "stream": "true"},
        timeout=300,
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 1:
                    asr.proc.kill()
    assert events[0]["type"] == "transcript.text.delta"
    assert events[-1]["type"] == "error" and events[-1]["error"]["message"].startswith("ASR backend")
    restart(asr, logs, "asr-after-stream-kill")


def test_killed_tts_mid_stream(rig):
    _, tts, gw, logs = rig
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "This sentence goes on and on. " * 40,
        "stream_format": "sse",
        "response_format": "pcm",
    }
    events = []
    with httpx.stream("POST", f"{gw.url}/v1/audio/speech", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 1:
                    tts.proc.kill()
    assert events[0]["type"] == "speech.audio.delta"
    assert events[-1]["type"] == "error" and events[-1]["error"]["message"].startswith("TTS backend")
    restart(tts, logs, "tts-after-kill")
    audio = httpx.post(
        f"{gw.url}/v1/audio/speech", json=body | {"stream_format": "audio", "input": "Hello."}, timeout=120
    )
    assert audio.status_code == 200 and len(audio.content) > 0
