"""How the gateway turns each backend answer or failure into an OpenAI error, in process."""

import json

import httpx
import pytest

from tests.unit.conftest import audio_file
from tests.unit.fake_predictor import error


def transcribe(gw, **data):
    return gw.client.post("/v1/audio/transcriptions", files=audio_file(), data={"model": "whisper-1", **data})


def speak(gw, fmt="wav"):
    return gw.client.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": fmt}
    )


def test_predictor_400_keeps_param_and_code(gw):
    gw.asr.answer = error(400, "language 'xx' is not supported", param="language", code="invalid_value")
    r = transcribe(gw, language="xx")
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "language 'xx' is not supported",
        "type": "invalid_request_error",
        "param": "language",
        "code": "invalid_value",
    }


def test_predictor_429_passes_retry_after(gw):
    gw.tts.answer = error(429, "TTS is at capacity", code="server_busy", headers={"Retry-After": "3"})
    r = speak(gw)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_a_transient_load_failure_passes_retry_after(gw):
    gw.tts.answer = error(
        503,
        "TTS backend unavailable: could not load model 'coqui:x'",
        code="model_unavailable",
        headers={"Retry-After": "2"},
    )
    r = speak(gw)
    assert r.status_code == 503 and r.headers["retry-after"] == "2" and "x-should-retry" not in r.headers
    assert r.json()["error"]["code"] == "model_unavailable" and r.headers["x-request-id"]


def test_permanent_load_failure_is_not_retried(gw):
    gw.tts.answer = error(
        503,
        "TTS backend unavailable: could not load model 'coqui:x'",
        code="model_unavailable",
        headers={"x-should-retry": "false"},
    )
    r = speak(gw)
    assert r.status_code == 503 and r.headers["x-should-retry"] == "false" and "retry-after" not in r.headers
    assert "coqui:x" in r.json()["error"]["message"]


def test_predictor_500_is_502_without_its_exception_text(gw):
    gw.asr.answer = error(500, "RuntimeError: CUDA out of memory at /opt/secret/path.py:12")
    r = transcribe(gw)
    assert r.status_code == 502 and r.headers["x-should-retry"] == "false"
    message = r.json()["error"]["message"]
    assert message.startswith("ASR backend failed") and "secret" not in message and "CUDA" not in message


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_malformed_answers_are_502(gw, fmt):
    gw.tts.answer = lambda _: httpx.Response(200, content=b"not json", headers={"x-sample-rate": "nope"})
    r = speak(gw, fmt)
    assert r.status_code == 502 and r.json()["error"]["message"].startswith("TTS backend")


def test_unexpected_gateway_failure_is_a_500_with_the_request_id(gw):
    def explode(_):
        raise RuntimeError("boom at /internal/path")

    gw.asr.answer = explode
    r = transcribe(gw)
    assert r.status_code == 500
    body = r.json()["error"]
    rid = r.headers["x-request-id"]
    assert rid in body["message"] and "/internal/path" not in body["message"] and body["type"] == "server_error"


def test_a_post_whose_connection_broke_is_never_sent_twice(gw):
    """The predictor may have worked on it (a poison file crashes it again): one attempt, a 502 the SDKs
    do not retry."""
    calls = []

    def broken(request):
        calls.append(1)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    gw.tts.answer = broken
    r = speak(gw)
    assert r.status_code == 502 and len(calls) == 1 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["code"] == "backend_connection_failed"


def test_a_request_that_never_connected_is_sent_once_more(gw):
    calls = []

    def refused(request):
        calls.append(1)
        gw.tts.answer = None  # the second attempt gets the happy path
        raise httpx.ConnectError("connection refused", request=request)

    gw.tts.answer = refused
    r = speak(gw)
    assert r.status_code == 200 and r.content[:4] == b"RIFF" and len(calls) == 1


def test_a_read_that_broke_off_is_asked_again(gw):
    calls = []

    def flaky(request):
        calls.append(1)
        gw.tts.answer = None
        raise httpx.ReadError("connection reset", request=request)

    gw.tts.answer = flaky
    r = gw.client.get("/v1/audio/voices")
    assert r.status_code == 200 and len(calls) == 1


def test_transcription_stream_broken_after_start_ends_with_an_error_event(gw):
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b'{"type":"text","text":" Hello"}\n'
            raise httpx.ReadError("connection reset")

    gw.asr.answer = lambda _: httpx.Response(200, stream=Broken())
    r = transcribe(gw, stream="true")
    assert r.status_code == 200
    events = [line for line in r.text.splitlines() if line.startswith("data: ")]
    assert '"transcript.text.delta"' in events[0] and '"type":"error"' in events[-1]
    assert "backend_stream_failed" in events[-1]


def test_an_encoder_failure_after_the_200_is_an_sse_error_event(gw, monkeypatch):
    import av

    from services.gateway import synthesis

    def broken(self, samples):
        raise av.error.ArgumentError(22, "Invalid argument")  # as libopus refuses a rate it does not take

    monkeypatch.setattr(synthesis.AudioEncoder, "feed", broken)
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "opus", "stream_format": "sse"}
    r = gw.client.post("/v1/audio/speech", json=body)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.status_code == 200 and events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "encoding_failed" and "opus" in events[-1]["error"]["message"]


@pytest.mark.parametrize("rate", [22050, 44100, 11025])
def test_a_sample_rate_opus_cannot_take_is_refused_at_start_up(rate):
    from pydantic import ValidationError

    from services.gateway.settings import GatewaySettings

    with pytest.raises(ValidationError):
        GatewaySettings(speech_sample_rate=rate)


def test_the_streamed_done_event_carries_usage_like_the_json_answer(gw):
    r = transcribe(gw, stream="true")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    done = events[-1]
    assert done["type"] == "transcript.text.done"
    assert done["usage"] == transcribe(gw).json()["usage"] == {"type": "duration", "seconds": 2.5}
