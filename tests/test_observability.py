"""Metrics, request ids and logs on a fresh real stack: a known mix of traffic, then all three
/metrics scraped with prometheus_client's parser and the exact counts checked; the client's request
id followed into the predictors' JSON log lines."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.espeak import speak


@pytest.fixture(scope="module")
def observed(workdir, tiny, spoken):
    asr, tts, gw = local_stack(
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_LOG_FORMAT": "json"},
        tts_env={
            "TTS_MODEL": str(tiny["vits"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_LOG_FORMAT": "json",
            "TTS_HOME": str(workdir / "tts-home-observed"),
        },
        gateway_env={"GATEWAY_LOG_FORMAT": "json"},
    )
    start([asr, tts, gw], workdir / "logs" / "observed")
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=300)
    wav = next(iter(spoken.values()))
    for fmt in ("json", "text", "srt"):  # three transcriptions in three formats
        client.audio.transcriptions.with_raw_response.create(
            model="whisper-1",
            file=wav.open("rb"),
            response_format=fmt,
            extra_headers={"x-request-id": f"obs-transcribe-{fmt}"},
        )
    with pytest.raises(openai.BadRequestError):  # a bad request: unknown language, refused by the predictor
        client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), language="xx")
    speech = {"model": "tts-1", "voice": "alloy", "input": "One. Two. Three.", "response_format": "mp3"}
    with httpx.stream("POST", f"{gw.url}/v1/audio/speech", json=speech, timeout=60) as r:  # a streamed speech
        assert r.status_code == 200
        r.read()
    yield asr, tts, gw
    for svc in (gw, tts, asr):
        svc.stop()


def scrape(svc) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{svc.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_gateway_counts_by_route_model_format_and_status(observed):
    *_, gw = observed
    m = scrape(gw)
    route = "/v1/audio/transcriptions"
    for fmt in ("json", "text", "srt"):
        assert (
            value(m, "speech_gateway_requests_total", route=route, model="whisper-1", response_format=fmt, status="200")
            == 1
        )
    assert (
        value(m, "speech_gateway_requests_total", route=route, model="whisper-1", response_format="json", status="400")
        == 1
    )
    assert (
        value(
            m,
            "speech_gateway_requests_total",
            route="/v1/audio/speech",
            model="tts-1",
            response_format="mp3",
            status="200",
        )
        == 1
    )
    assert value(m, "speech_gateway_request_duration_seconds_count", route=route) == 4
    assert value(m, "speech_gateway_time_to_first_byte_seconds_count", route="/v1/audio/speech") == 1
    assert value(m, "speech_gateway_audio_seconds_total", route=route) > 3 * 3  # three clips of ~4 s
    assert value(m, "speech_gateway_response_bytes_total", route="/v1/audio/speech") > 1000


def test_predictors_count_requests_stages_and_loads(observed):
    asr, tts, _ = observed
    a = scrape(asr)
    assert value(a, "speech_asr_requests_total", route="infer", status="200") == 3
    assert value(a, "speech_asr_requests_total", route="infer", status="400") == 1
    assert value(a, "speech_asr_stage_seconds_count", stage="transcribe") == 3
    assert value(a, "speech_asr_model_loads_total", model=f"whisper:{whisper_models_path()}") == 1
    assert value(a, "speech_asr_queue_wait_seconds_count") == 3
    assert value(a, "speech_asr_real_time_factor_count") == 3 and value(a, "speech_asr_real_time_factor_sum") > 0
    assert value(a, "speech_asr_queue_depth") == 0 and value(a, "speech_asr_active_requests") == 0
    t = scrape(tts)
    assert value(t, "speech_tts_requests_total", route="infer_stream", status="200") == 1
    assert value(t, "speech_tts_stage_seconds_count", stage="synthesize") == 1
    assert value(t, "speech_tts_audio_seconds_total") > 0.1


def test_fallback_redecodes_are_counted(observed, workdir):
    """A recording that repeats itself decodes to text that compresses too well, OpenAI's sign of a
    repetition loop: the fallback re-decodes it at rising temperatures, and the metric says so."""
    asr, _, gw = observed
    sentence = "Please schedule a meeting with the design team on Thursday afternoon."
    wav = speak(" ".join([sentence] * 6), workdir / "repeating.wav")
    before = sum(v for (name, _), v in scrape(asr).items() if name == "speech_asr_fallback_decodes_total")
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=300)
    text = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), response_format="text")
    assert text.strip()  # a transcript (whichever decode won: a sampled re-decode may garble the words)
    after = scrape(asr)
    assert sum(v for (name, _), v in after.items() if name == "speech_asr_fallback_decodes_total") > before
    assert value(after, "speech_asr_fallback_decodes_total", temperature="0.2") >= 1


def whisper_models_path() -> str:
    return json.loads(whisper_models())["whisper-1"]


def test_a_cancelled_stream_is_counted(observed):
    *_, gw = observed
    before = value(scrape(gw), "speech_gateway_requests_cancelled_total", route="/v1/audio/speech")
    body = {"model": "tts-1", "voice": "alloy", "input": "Word. " * 600, "response_format": "pcm"}
    with httpx.stream("POST", f"{gw.url}/v1/audio/speech", json=body, timeout=60) as r:
        next(r.iter_bytes())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = value(scrape(gw), "speech_gateway_requests_cancelled_total", route="/v1/audio/speech")
        if after > before:
            break
        time.sleep(0.1)
    assert after == before + 1


def log_lines(svc) -> list[dict]:
    return [json.loads(line) for line in svc.log_path.read_text().splitlines() if line.startswith("{")]


def test_the_client_request_id_follows_the_request_into_every_service(observed):
    asr, _, gw = observed
    for svc in (asr, gw):
        lines = [line for line in log_lines(svc) if line["request_id"] == "obs-transcribe-srt"]
        assert lines, f"no log line of obs-transcribe-srt in {svc.name}"
        for line in lines:
            assert "lazy dog" not in line["message"].lower()  # no transcript content in logs
    access = [line for line in log_lines(gw) if line["logger"] == "services.gateway.access"]
    assert any(line["request_id"] == "obs-transcribe-srt" and line["status"] == 200 for line in access)
