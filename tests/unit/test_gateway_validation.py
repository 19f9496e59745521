"""Every validation rule of the gateway, in process: a 400 with OpenAI's envelope and the right
``param``, decided before any backend work."""

import base64

import pytest

from tests.unit.conftest import audio_file

DATA = "data:audio/wav;base64," + base64.b64encode(b"RIFF0000WAVE").decode()


def speech(**fields):
    return {"model": "tts-1", "voice": "alloy", "input": "Hello.", "response_format": "wav", **fields}


def infer_calls(fake):
    return [s for s in fake.seen if s.path != "/models"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "gpt-nope"}, "model"),
        ({"input": ""}, "input"),
        ({"input": "   "}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"speed": 0.1}, "speed"),
        ({"speed": 4.5}, "speed"),
        ({"speed": "fast"}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"stream_format": "websocket"}, "stream_format"),
        ({"voice": {"name": "x"}}, "voice"),
        ({"voice": 7}, "voice"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"instructions": "x" * 4097}, "instructions"),
    ],
)
def test_speech_rules(gw, fields, param):
    r = gw.client.post("/v1/audio/speech", json=speech(**fields))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert not infer_calls(gw.tts)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "gpt-nope"}, "model"),
        ({"response_format": "mp3"}, "response_format"),
        ({"temperature": "1.5"}, "temperature"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),
        ({"timestamp_granularities[]": "sentence", "response_format": "verbose_json"}, "timestamp_granularities[]"),
        ({"min_speakers": "2"}, "min_speakers"),
        ({"diarize": "true", "min_speakers": "3", "max_speakers": "2"}, "min_speakers"),
        ({"min_speakers": "0", "diarize": "true"}, "min_speakers"),
        ({"include[]": "logprobs", "response_format": "srt"}, "include[]"),
        ({"include[]": "logprobs", "advanced": "true"}, "include[]"),
        ({"include[]": "everything"}, "include[]"),
        ({"known_speaker_names[]": "agent", "response_format": "diarized_json"}, "known_speaker_references[]"),
        (
            {
                "known_speaker_names[]": "agent",
                "known_speaker_references[]": "aGVsbG8=",
                "response_format": "diarized_json",
            },
            "known_speaker_references[]",
        ),
        (
            {
                "known_speaker_names[]": "agent",
                "known_speaker_references[]": "data:audio/wav;base64,AAA",
                "response_format": "diarized_json",
            },
            "known_speaker_references[]",
        ),
        (
            {
                "known_speaker_names[]": ["a", "a"],
                "known_speaker_references[]": [DATA, DATA],
                "response_format": "diarized_json",
            },
            "known_speaker_names[]",
        ),
        ({"known_speaker_names[]": "agent", "known_speaker_references[]": DATA}, "known_speaker_names[]"),
        (
            {
                "known_speaker_names[]": list("abcde"),
                "known_speaker_references[]": [DATA] * 5,
                "response_format": "diarized_json",
            },
            "known_speaker_names[]",
        ),
    ],
)
def test_transcription_rules(gw, fields, param):
    r = gw.client.post("/v1/audio/transcriptions", files=audio_file(), data={"model": "whisper-1", **fields})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()
    assert not infer_calls(gw.asr)


def test_empty_and_missing_file(gw):
    r = gw.client.post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", b"", "audio/wav")}, data={"model": "whisper-1"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_file"
    r = gw.client.post("/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"model": "tts-1",}', b"\xff\xfe"])
def test_invalid_json_is_400_without_a_byte_offset(gw, body):
    r = gw.client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] is None and error["code"] == "invalid_json", error


def test_echoed_values_are_cut_short(gw):
    huge = "m" * 200_000
    r = gw.client.post("/v1/audio/speech", json=speech(model=huge))
    assert r.status_code == 400 and len(r.json()["error"]["message"]) < 400
    r = gw.client.get(f"/v1/models/{'q' * 5000}")
    assert r.status_code == 404 and len(r.json()["error"]["message"]) < 400


def test_valid_requests_reach_the_backend_with_the_request_id(gw):
    r = gw.client.post(
        "/v1/audio/transcriptions",
        files=audio_file(),
        data={"model": "whisper-1"},
        headers={"x-request-id": "client-id-123"},
    )
    assert r.status_code == 200 and r.json()["text"] == "Hello there."
    assert r.headers["x-request-id"] == "client-id-123"
    call = infer_calls(gw.asr)[-1]
    assert call.headers["x-request-id"] == "client-id-123" and call.request.id == "client-id-123"
    (audio,) = call.request.tensor("audio").elements()
    assert bytes(audio) == audio_file()["file"][1]


def test_known_speaker_references_travel_as_binary(gw):
    r = gw.client.post(
        "/v1/audio/transcriptions",
        files=audio_file(),
        data={
            "model": "whisper-1",
            "response_format": "diarized_json",
            "known_speaker_names[]": ["ann", "bo"],
            "known_speaker_references[]": [DATA, "data:audio/ogg;base64," + base64.b64encode(b"OggS-x").decode()],
        },
    )
    assert r.status_code == 200, r.text
    request = infer_calls(gw.asr)[-1].request
    assert request.parameters["known_speaker_names"] == ["ann", "bo"]
    refs = [bytes(e) for e in request.tensor("known_speaker_references").elements()]
    assert refs == [b"RIFF0000WAVE", b"OggS-x"]
    assert "known_speakers" not in request.parameters


@pytest.mark.parametrize("given", ["x" * 200, "bad id with spaces", "id\x01", ""])
def test_unusable_request_ids_are_replaced(gw, given):
    r = gw.client.get("/v1/models", headers={"x-request-id": given})
    assert r.headers["x-request-id"].startswith("req_")


def test_openapi_documents_the_statuses_really_sent(gw):
    spec = gw.client.get("/openapi.json").json()
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech"):
        responses = spec["paths"][path]["post"]["responses"]
        assert "422" not in responses
        assert {"200", "400", "401", "413", "429", "502", "503", "504"} <= set(responses)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
