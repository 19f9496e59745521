"""Body limits and the gateway's metrics, in process."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.conftest import WAV_HEADER


def test_json_body_over_the_limit_is_413(gateway_with):
    gw = gateway_with(max_json_bytes=2048)
    r = gw.client.post(
        "/v1/audio/speech", content=b'{"input": "' + b"a" * 5000 + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_multipart_over_the_limit_is_413_by_content_length(gateway_with):
    gw = gateway_with(max_upload_bytes=1000, max_form_overhead_bytes=1000)
    r = gw.client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", WAV_HEADER + b"\0" * 5000)}, data={"model": "whisper-1"}
    )
    assert r.status_code == 413 and not [s for s in gw.asr.seen if s.path != "/models"]
    assert r.json()["error"]["param"] == "file"


def test_streamed_body_over_the_limit_is_413_while_reading(gateway_with):
    """No Content-Length: counted as it arrives (that reading stops is shown over a real socket in
    tests/test_abuse.py; the test client hands the app the whole body)."""
    gw = gateway_with(max_upload_bytes=1000, max_form_overhead_bytes=1000)

    def body():
        for _ in range(100):
            yield b"-" * 1000

    r = gw.client.post(
        "/v1/audio/transcriptions", content=body(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert r.json()["error"]["param"] == "file"


def test_file_over_the_upload_limit_is_413_naming_it(gateway_with):
    gw = gateway_with(max_upload_bytes=1000)
    r = gw.client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", WAV_HEADER + b"\0" * 2000)}, data={"model": "whisper-1"}
    )
    assert r.status_code == 413 and r.json()["error"]["param"] == "file"


def samples(gw) -> dict[tuple, float]:
    text = gw.client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_request_metrics_count_by_route_model_format_and_status(gateway_with):
    gw = gateway_with()
    gw.client.get("/v1/models")  # fills the known model ids
    for fmt in ("json", "text", "json"):
        gw.client.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", WAV_HEADER)},
            data={"model": "whisper-1", "response_format": fmt},
        )
    gw.client.post("/v1/audio/transcriptions", files={"file": ("a.wav", WAV_HEADER)}, data={"model": "made-up"})
    gw.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "x", "input": "Hi.", "response_format": "mp3"})
    got = samples(gw)
    route = "/v1/audio/transcriptions"

    def count(model, fmt, status, r=route):
        key = (
            "speech_gateway_requests_total",
            (("model", model), ("response_format", fmt), ("route", r), ("status", status)),
        )
        return got.get(key, 0)

    assert count("whisper-1", "json", "200") == 2 and count("whisper-1", "text", "200") == 1
    assert count("other", "json", "400") == 1  # a made-up model id is never a label value
    assert count("tts-1", "mp3", "200", "/v1/audio/speech") == 1
    assert got[("speech_gateway_audio_seconds_total", (("route", route),))] == 7.5  # 3 x 2.5 s
    assert got[("speech_gateway_request_duration_seconds_count", (("route", route),))] == 4
    first_byte = got[("speech_gateway_time_to_first_byte_seconds_count", (("route", "/v1/audio/speech"),))]
    assert first_byte == 1  # mp3 streams


def test_readiness_names_each_predictor_and_fails_only_when_none_answers(gateway_with):
    gw = gateway_with()
    r = gw.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "backends": {"asr": "ready", "tts": "ready"}}
    gw.client.app.state.readiness.ttl = 0  # probe on every call
    gw.tts.down = True
    r = gw.client.get("/readyz")
    assert r.status_code == 200 and r.json()["backends"] == {"asr": "ready", "tts": "unavailable"}
    gw.asr.down = True
    r = gw.client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


def test_a_failed_model_list_is_not_asked_again_by_every_request(gateway_with):
    gw = gateway_with()
    original, asked = gw.tts.handle, []

    async def models_fail(request):
        if request.url.path == "/models":
            asked.append(1)
            return httpx.Response(503, json={"error": {"message": "loading", "type": "server_error"}})
        return await original(request)

    gw.client.app.state.tts.client._transport = httpx.MockTransport(models_fail)
    for _ in range(5):
        assert gw.client.get("/v1/models").status_code == 200
    assert len(asked) == 1  # then kept for a few seconds (before: once per request, under the lock)
