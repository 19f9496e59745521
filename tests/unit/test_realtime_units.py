"""Realtime sessions in process: session configuration (GA and beta shapes), turn detection, and the
WebSocket route against a fake ASR predictor (its VAD is a loudness stand-in)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from openai.types.realtime import RealtimeTranscriptionSessionCreateResponse
from starlette.testclient import WebSocketDenialResponse

from services.gateway.realtime.config import ConfigError, SessionConfig, Vad
from services.gateway.realtime.turns import FRAME, Started, Stopped, TurnDetector
from tests.unit.conftest import KEYS
from tests.unit.fake_predictor import RESULT, error

# -- configuration ---------------------------------------------------------------------------------


def test_ga_updates_change_only_what_they_name():
    config = SessionConfig().update_ga(
        {"type": "transcription", "audio": {"input": {"transcription": {"model": "turbo", "language": "de"}}}}
    )
    config = config.update_ga({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    assert (config.model, config.language, config.format) == ("turbo", "de", "audio/pcmu")
    assert config.turn_detection == Vad()  # OpenAI's default for transcription sessions
    cleared = config.update_ga({"type": "transcription", "audio": {"input": {"turn_detection": None}}})
    assert cleared.turn_detection is None and cleared.model == "turbo"


def test_semantic_vad_is_served_as_server_vad_and_says_so():
    config = SessionConfig().update_ga(
        {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}
    )
    rendered = config.render_ga("sess_1", 0)["audio"]["input"]["turn_detection"]
    assert rendered == {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 250}


def test_renders_parse_as_the_sdk_types():
    config = SessionConfig(include=("item.input_audio_transcription.logprobs",))
    parsed = RealtimeTranscriptionSessionCreateResponse.model_validate(config.render_ga("sess_1", 1))
    assert parsed.model_dump()["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    beta = config.update_beta({"input_audio_format": "g711_alaw", "turn_detection": None}).render_beta("sess_1", 1)
    assert beta["input_audio_format"] == "g711_alaw" and beta["turn_detection"] is None


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        ({"audio": {"input": {"format": {"type": "audio/opus"}}}}, "session.audio.input.format.type"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "session.audio.input.format.rate"),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 10}}}},
            "session.audio.input.turn_detection.silence_duration_ms",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "max"}}}},
            "session.audio.input.turn_detection.eagerness",
        ),
        ({"audio": {"input": {"transcription": {"language": 5}}}}, "session.audio.input.transcription.language"),
        ({"include": ["item.input_audio_transcription.tokens"]}, "session.include"),
        ({"audio": "pcm"}, "session.audio"),
        ("nope", "session"),
    ],
)
def test_bad_configurations_name_the_field(session, param):
    with pytest.raises(ConfigError) as err:
        SessionConfig().update_ga(session)
    assert err.value.param == param


# -- turns -----------------------------------------------------------------------------------------
def test_turns_start_with_prefix_padding_and_stop_after_the_silence():
    detector = TurnDetector(Vad(threshold=0.5, prefix_padding_ms=64, silence_duration_ms=96))
    probabilities = [0.1] * 10 + [0.9] * 5 + [0.4] * 2 + [0.9] + [0.1] * 3 + [0.1] * 4
    events = detector.feed(0, probabilities)
    assert events == [Started(10 * FRAME - 1024), Stopped(18 * FRAME, 10 * FRAME - 1024)]  # 0.4: hysteresis
    assert not detector.in_speech


def test_one_batch_of_frames_can_end_a_turn_and_start_the_next():
    detector = TurnDetector(Vad(threshold=0.5, prefix_padding_ms=64, silence_duration_ms=96))
    events = detector.feed(0, [0.9] * 5 + [0.1] * 6 + [0.9] * 4)
    assert events == [Started(0), Stopped(5 * FRAME, 0), Started(11 * FRAME - 1024)]
    assert detector.in_speech and detector.start == 11 * FRAME - 1024


# -- the WebSocket route ---------------------------------------------------------------------------
def pcm(seconds: float, loud: bool) -> str:
    t = np.arange(int(seconds * 24000)) / 24000
    level = 0.3 if loud else 0.0
    return base64.b64encode((level * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()).decode()


def events_until(ws, kind: str, count: int = 1) -> list[dict]:
    seen: list[dict] = []
    while sum(e["type"] == kind for e in seen) < count:
        seen.append(ws.receive_json())
    return seen


CLIENT_COMMITS = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {"input": {"turn_detection": None, "transcription": {"model": "whisper-1", "language": "en"}}},
    },
}


def test_client_commit_flow(gw):
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        created = ws.receive_json()
        assert created["type"] == "session.created" and created["session"]["id"].startswith("sess_")
        ws.send_json(CLIENT_COMMITS)
        assert ws.receive_json()["type"] == "session.updated"
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(1.0, loud=True)})
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = events_until(ws, "conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
    assert deltas == ["Hello", " there."] and events[-1]["transcript"] == RESULT["text"] == "".join(deltas)
    assert events[-1]["usage"] == {"type": "duration", "seconds": pytest.approx(1.0, abs=0.01)}
    (sent,) = [s for s in gw.asr.seen if s.path.endswith("/infer_stream")]
    assert sent.request.parameters["language"] == "en" and sent.request.parameters["logprobs"] is False
    session_id = created["session"]["id"]
    assert sent.headers["x-request-id"] == f"{session_id}/{events[0]['item_id']}"


def test_vad_calls_carry_the_session_id(gw):
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        session_id = ws.receive_json()["session"]["id"]
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(1.0, loud=True)})
        events_until(ws, "input_audio_buffer.speech_started")
    vad = [s for s in gw.asr.seen if s.path == "/vad"]
    assert vad and {s.headers["x-request-id"] for s in vad} == {session_id}


def test_server_vad_commits_each_turn(gw):
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        for seconds, loud in ((0.5, False), (1.0, True), (1.0, False), (0.8, True), (1.0, False)):
            ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(seconds, loud)})
        events = events_until(ws, "conversation.item.input_audio_transcription.completed", 2)
    started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    assert [e["audio_start_ms"] for e in started] == [pytest.approx(200, abs=40), pytest.approx(2200, abs=40)]
    assert [e["audio_end_ms"] for e in stopped] == [pytest.approx(1500, abs=40), pytest.approx(3300, abs=40)]
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped]


def test_a_failed_item_is_a_failed_event_and_the_session_goes_on(gw):
    gw.asr.answer = error(500, "boom")
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json(CLIENT_COMMITS)
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(0.5, loud=True)})
        ws.send_json({"type": "input_audio_buffer.commit"})
        failed = events_until(ws, "conversation.item.input_audio_transcription.failed")[-1]
        assert failed["error"]["code"] == "backend_failed" and "boom" not in failed["error"]["message"]
        ws.send_json({"type": "input_audio_buffer.clear", "event_id": "still-here"})
        assert events_until(ws, "input_audio_buffer.cleared")


def test_the_buffer_is_bounded(gateway_with):
    gw = gateway_with(realtime_max_buffer_seconds=1)
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json(CLIENT_COMMITS)
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(0.8, loud=True)})
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(0.8, loud=True), "event_id": "x"})
        error_event = events_until(ws, "error")[-1]["error"]
        assert error_event["code"] == "input_audio_buffer_full" and error_event["event_id"] == "x"


def test_keys_and_limits_are_checked_before_the_handshake(gateway_with):
    gw = gateway_with(api_keys=KEYS)
    with pytest.raises(WebSocketDenialResponse) as denied:
        gw.client.websocket_connect("/v1/realtime?intent=transcription").__enter__()
    assert denied.value.status_code == 401 and denied.value.json()["error"]["code"] == "invalid_api_key"
    assert denied.value.headers["x-request-id"].startswith("req_")  # refusals carry one, as every answer
    with gw.client.websocket_connect(
        "/v1/realtime?intent=transcription", subprotocols=["realtime", f"openai-insecure-api-key.{KEYS[0]}"]
    ) as ws:
        assert ws.accepted_subprotocol == "realtime" and ws.receive_json()["type"] == "session.created"
    full = gateway_with(realtime_max_sessions=0)
    with pytest.raises(WebSocketDenialResponse) as busy:
        full.client.websocket_connect("/v1/realtime").__enter__()
    assert busy.value.status_code == 429 and busy.value.headers["retry-after"]


def test_vad_failure_is_an_error_event(gw):
    gw.asr.answer = lambda request: (
        httpx.Response(503, json={"error": {"message": "ASR backend unavailable", "type": "server_error", "code": "x"}})
        if request.url.path == "/vad"
        else httpx.Response(500)
    )
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json({"type": "input_audio_buffer.append", "audio": pcm(0.5, loud=True)})
        error_event = events_until(ws, "error")[-1]["error"]
        assert error_event["type"] == "server_error" and "Turn detection failed" in error_event["message"]
        assert json.dumps(error_event)
