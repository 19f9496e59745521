"""Realtime sessions in process: session configuration (GA and beta shapes), and the WebSocket route of
the real gateway in front of the ASR predictor's real live route on loopback, with Whisper and Silero
replaced at the model boundary (``tests.support.live``)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from openai.types.realtime import RealtimeTranscriptionSessionCreateResponse
from starlette.testclient import WebSocketDenialResponse

from services.gateway.realtime.config import ConfigError, SessionConfig, Vad
from services.gateway.realtime.session import memory_bound
from services.gateway.settings import GatewaySettings
from services.gateway.translation.session import memory_bound as translation_memory_bound
from tests.support.live import IN_RATE, LivePredictor, ScriptedWhisper, live_predictor, tone_words
from tests.unit.conftest import KEYS, Gateway, make_gateway

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
        ({"audio": {"input": {"transcription": {"delay": "now"}}}}, "session.audio.input.transcription.delay"),
        ({"include": ["item.input_audio_transcription.tokens"]}, "session.include"),
        ({"audio": "pcm"}, "session.audio"),
        ("nope", "session"),
    ],
)
def test_bad_configurations_name_the_field(session, param):
    with pytest.raises(ConfigError) as err:
        SessionConfig().update_ga(session)
    assert err.value.param == param


def test_the_charts_sessions_fit_the_gateways_memory_limit():
    """Every realtime transcription and translation session at its bound (a largest message, decoded,
    a full outbox, a translation's speaker reference) fits in the gateway pod's memory limit with half
    of it left for everything else."""
    values = yaml.safe_load(Path("charts/speech-stack/values.yaml").read_text())
    gateway = values["gateway"]
    settings = GatewaySettings(
        realtime_max_event_bytes=gateway["realtime"]["maxEventBytes"],
        translation_voice_seconds=gateway["translation"]["voiceSeconds"],
    )
    limit = gateway["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    held = gateway["realtime"]["maxSessions"] * memory_bound(settings)
    held += gateway["translation"]["maxSessions"] * translation_memory_bound(settings)
    assert held <= float(limit[:-2]) * 2**30 / 2


# -- the WebSocket route ---------------------------------------------------------------------------
@contextlib.contextmanager
def realtime_stack(
    whisper: ScriptedWhisper, asr: dict | None = None, **gateway
) -> Iterator[tuple[Gateway, LivePredictor]]:
    with live_predictor(whisper, **(asr or {})) as predictor, make_gateway(asr_url=predictor.url, **gateway) as gw:
        yield gw, predictor


@pytest.fixture
def stack() -> Iterator[Callable[..., tuple[Gateway, LivePredictor]]]:
    with contextlib.ExitStack() as stack:
        yield lambda whisper, asr=None, **gateway: stack.enter_context(realtime_stack(whisper, asr, **gateway))


def appends(pcm: bytes, chunk_ms: int = 100) -> Iterator[dict]:
    step = IN_RATE * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        yield {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()}


def events_until(ws, kind: str, count: int = 1) -> list[dict]:
    seen: list[dict] = []
    while sum(e["type"] == kind for e in seen) < count:
        seen.append(ws.receive_json())
    return seen


def session(turn_detection: dict | None = None, delay: str = "minimal") -> dict:
    return {
        "type": "session.update",
        "session": {
            "type": "transcription",
            "audio": {
                "input": {
                    "turn_detection": turn_detection,
                    "transcription": {"model": "whisper-1", "language": "en", "delay": delay},
                }
            },
        },
    }


SERVER_VAD = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 100}
DELTA, COMPLETED = (
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
)


def test_client_commit_flow(stack):
    whisper = ScriptedWhisper()
    gw, _ = stack(whisper)
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        created = ws.receive_json()
        assert created["type"] == "session.created" and created["session"]["id"].startswith("sess_")
        ws.send_json(session())
        assert ws.receive_json()["type"] == "session.updated"
        for append in appends(tone_words(6, lead=0.2, tail=0.3)):
            ws.send_json(append)
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = events_until(ws, COMPLETED)
    kinds = [e["type"] for e in events]
    committed = kinds.index("input_audio_buffer.committed")
    assert kinds[committed : committed + 3] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    deltas = [e["delta"] for e in events if e["type"] == DELTA]
    assert len(deltas) >= 2 and "".join(deltas) == events[-1]["transcript"] == "Alpha bravo charlie delta echo foxtrot."
    assert events[-1]["usage"] == {"type": "duration", "seconds": pytest.approx(0.2 + 1.8 + 0.3, abs=0.01)}
    assert whisper.request_ids == {created["session"]["id"]}  # the predictor logs under the session's id


def test_server_vad_sends_text_before_the_speaker_stops(stack):
    gw, _ = stack(ScriptedWhisper())
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json(session(SERVER_VAD))
        for append in appends(tone_words(8) + tone_words(3)):
            ws.send_json(append)
        events = events_until(ws, COMPLETED, 2)
    kinds = [e["type"] for e in events]
    started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    assert [e["audio_start_ms"] for e in started] == [pytest.approx(400, abs=40), pytest.approx(4300, abs=40)]
    assert [e["audio_end_ms"] for e in stopped] == [pytest.approx(2800, abs=40), pytest.approx(5200, abs=40)]
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped]
    first_item = started[0]["item_id"]
    early = [e for e in events[: kinds.index("input_audio_buffer.speech_stopped")] if e["type"] == DELTA]
    assert len(early) >= 2 and {e["item_id"] for e in early} == {first_item}
    transcripts = [e["transcript"] for e in events if e["type"] == COMPLETED]
    assert transcripts == ["Alpha bravo charlie delta echo foxtrot golf hotel.", "Alpha bravo charlie."]
    for item in (first_item, started[1]["item_id"]):
        text = "".join(e["delta"] for e in events if e["type"] == DELTA and e["item_id"] == item)
        assert text == next(e["transcript"] for e in events if e["type"] == COMPLETED and e["item_id"] == item)


def test_a_failed_item_is_a_failed_event_and_the_session_goes_on(stack):
    gw, _ = stack(ScriptedWhisper(fail=True))
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json(session(delay="xhigh"))
        for append in appends(tone_words(2, lead=0.2, tail=0.2)):
            ws.send_json(append)
        ws.send_json({"type": "input_audio_buffer.commit"})
        failed = events_until(ws, "conversation.item.input_audio_transcription.failed")[-1]
        assert failed["error"]["code"] == "backend_failed" and "secret" not in failed["error"]["message"]
        ws.send_json({"type": "input_audio_buffer.clear", "event_id": "still-here"})
        assert events_until(ws, "input_audio_buffer.cleared")


def test_the_predictors_buffer_bound_is_an_error_naming_the_append(stack):
    gw, _ = stack(ScriptedWhisper(), asr={"live_max_buffer_seconds": 1})
    with gw.client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_json(session(delay="xhigh"))
        first, *_ = appends(bytes(IN_RATE * 2 * 8 // 10), chunk_ms=800)
        ws.send_json(first)
        ws.send_json({**first, "event_id": "too-much"})
        error = events_until(ws, "error")[-1]["error"]
        assert (error["code"], error["param"], error["event_id"]) == ("input_audio_buffer_full", "audio", "too-much")
        ws.send_json({**first, "audio": base64.b64encode(b"\x00\x01\x02").decode(), "event_id": "odd"})
        odd = events_until(ws, "error")[-1]["error"]
        assert (odd["code"], odd["event_id"]) == ("invalid_value", "odd") and "16-bit" in odd["message"]


def test_keys_and_limits_are_checked_before_the_handshake(stack):
    gw, _ = stack(ScriptedWhisper(), api_keys=KEYS)
    with pytest.raises(WebSocketDenialResponse) as denied:
        gw.client.websocket_connect("/v1/realtime?intent=transcription").__enter__()
    assert denied.value.status_code == 401 and denied.value.json()["error"]["code"] == "invalid_api_key"
    assert denied.value.headers["x-request-id"].startswith("req_")  # refusals carry one, as every answer
    with gw.client.websocket_connect(
        "/v1/realtime?intent=transcription", subprotocols=["realtime", f"openai-insecure-api-key.{KEYS[0]}"]
    ) as ws:
        assert ws.accepted_subprotocol == "realtime" and ws.receive_json()["type"] == "session.created"
    full, _ = stack(ScriptedWhisper(), realtime_max_sessions=0)
    with pytest.raises(WebSocketDenialResponse) as busy:
        full.client.websocket_connect("/v1/realtime").__enter__()
    assert busy.value.status_code == 429 and busy.value.headers["retry-after"]


def test_a_full_predictor_refuses_the_clients_handshake(stack):
    gw, _ = stack(ScriptedWhisper(), asr={"live_max_sessions": 1, "retry_after_seconds": 7})
    with gw.client.websocket_connect("/v1/realtime") as ws:
        assert ws.receive_json()["type"] == "session.created"
        with pytest.raises(WebSocketDenialResponse) as busy:
            gw.client.websocket_connect("/v1/realtime").__enter__()
        assert busy.value.status_code == 429 and busy.value.json()["error"]["message"].startswith("ASR backend")
        assert busy.value.headers["retry-after"] == "7"
    assert gw.client.app.state.realtime_sessions == 0


def test_a_predictor_that_goes_away_ends_the_session_with_an_error(stack):
    gw, predictor = stack(ScriptedWhisper())
    with gw.client.websocket_connect("/v1/realtime") as ws:
        ws.receive_json()
        predictor.server.should_exit = True  # uvicorn closes its WebSockets on the way out
        error = events_until(ws, "error")[-1]["error"]
        assert error["code"] == "backend_failed" and error["type"] == "server_error"
        with pytest.raises(Exception):  # noqa: B017,PT011 - the gateway closed the session
            ws.receive_json()
