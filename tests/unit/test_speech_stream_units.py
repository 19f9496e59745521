"""Speech fed by a text stream and word timings, in process: the splitter, session.config, and the
WebSocket protocol and POST /v1/audio/speech's word_timestamps against fake predictors at the HTTP
boundary (the fake TTS speaks 0.5 s of tone per request; the fake aligner puts words 0.1 s apart)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.testclient import WebSocketDenialResponse

from services.gateway.speech_stream.config import ConfigRefused, StreamConfig
from services.gateway.speech_stream.splitter import TextSplitter
from tests.unit.conftest import KEYS
from tests.unit.fake_predictor import error

# -- the splitter ----------------------------------------------------------------------------------


def pieces(splitter: TextSplitter, text: str, step: int = 3) -> list[str]:
    """Fed as an LLM streams: a few characters per message."""
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.feed(text[i : i + step])
    return out


def test_sentences_end_at_a_terminator_followed_by_space():
    splitter = TextSplitter("sentence", 4096)
    text = 'Dr. Smith paid $3.50 for it, e.g. at 5 p.m. today! Did J. Doe agree? "Yes." 你好。再见 Wait... '
    assert pieces(splitter, text) == [
        "Dr. Smith paid $3.50 for it, e.g. at 5 p.m. today!",
        "Did J. Doe agree?",
        '"Yes."',
        "你好。",
        "再见 Wait...",
    ]
    assert splitter.feed("The end.") == [] and splitter.flush() == ["The end."]  # nothing followed it yet


def test_clauses_need_some_length_and_none_waits_for_the_flush():
    clause = TextSplitter("clause", 4096)
    assert pieces(clause, "Well, I think that we should go, and then, maybe, eat; sure ") == [
        "Well, I think that we should go,",
        "and then, maybe,",
    ]
    assert clause.flush() == ["eat; sure"]
    whole = TextSplitter("none", 4096)
    assert pieces(whole, "One. Two! Three? ") == [] and whole.flush() == ["One. Two! Three?"]


def test_a_unit_is_cut_at_the_limit_at_a_space():
    splitter = TextSplitter("none", 20)
    assert splitter.feed("aaaa bbbb cccc dddd eeee ffff") == ["aaaa bbbb cccc dddd"]
    assert splitter.feed(" " + "x" * 45) == ["eeee ffff", "x" * 20, "x" * 20]


# -- session.config --------------------------------------------------------------------------------
def test_config_is_read_flat_or_nested_with_aliases_and_unknown_fields_ignored():
    flat = StreamConfig.parse({"type": "session.config", "speaker": "Ana", "stream_audio": True,
                               "response_format": "pcm", "task_type": "Base", "max_new_tokens": 9})  # fmt: skip
    assert (flat.voice, flat.stream_audio, flat.split_granularity) == ("Ana", True, "none")
    nested = StreamConfig.parse({"type": "session.config", "session": {"voice": "Bo", "split_granularity": "clause"}})
    assert (nested.voice, nested.split_granularity, nested.response_format) == ("Bo", "clause", "wav")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"stream_audio": True, "response_format": "mp3"}, "requires response_format='pcm'"),
        ({"word_timestamps": True}, "word_timestamps=true requires stream_audio=true"),
        ({"speed": 9}, "speed"),
        ({"split_granularity": "word"}, "split_granularity"),
        ({"response_format": "ogg"}, "response_format"),
    ],
)
def test_bad_configs_say_what_is_wrong(fields, says):
    with pytest.raises(ConfigRefused) as refused:
        StreamConfig.parse({"type": "session.config", **fields})
    assert refused.value.message.startswith("Invalid session config:") and says in refused.value.message


# -- the WebSocket -----------------------------------------------------------------------------------
PCM = {"type": "session.config", "voice": "alloy", "response_format": "pcm", "stream_audio": True}


def until(ws, kind: str) -> list[Any]:
    """Frames (JSON events and binary audio) up to and including the first ``kind`` event."""
    frames: list[Any] = []
    while True:
        message = ws.receive()
        if message.get("bytes") is not None:
            frames.append(message["bytes"])
            continue
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed before {kind}: {frames}")
        frames.append(json.loads(message["text"]))
        if frames[-1]["type"] == kind:
            return frames


def events(frames: list) -> list[dict]:
    return [f for f in frames if isinstance(f, dict)]


def test_units_are_spoken_in_order_as_they_complete_and_utterances_follow(gw):
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json(PCM | {"split_granularity": "sentence"})
        for piece in ("Hel", "lo th", "ere. ", "How are", " you?"):
            ws.send_json({"type": "input.text", "text": piece})
        first = until(ws, "audio.done")  # spoken before input.done: the sentence was complete
        ws.send_json({"type": "input.done"})
        rest = until(ws, "session.done")
        ws.send_json({"type": "input.text", "text": "Again."})
        ws.send_json({"type": "input.done"})
        second = until(ws, "session.done")
    start = events(first)[0]
    assert start == {"type": "audio.start", "utterance_index": 0, "sentence_index": 0, "sentence_text": "Hello there.",
                     "format": "pcm", "sample_rate": 24000, "channels": 1}  # fmt: skip
    audio = b"".join(f for f in first if isinstance(f, bytes))
    assert len(audio) == 24000 and events(first)[-1]["total_bytes"] == 24000  # 0.5 s of PCM16 at 24 kHz
    assert [e["sentence_text"] for e in events(rest) if e["type"] == "audio.start"] == ["How are you?"]
    assert events(rest)[-1] == {"type": "session.done", "utterance_index": 0, "total_sentences": 2}
    assert events(second)[-1] == {"type": "session.done", "utterance_index": 1, "total_sentences": 1}
    sent = [s for s in gw.tts.seen if s.path.endswith("/infer_stream")]
    texts = [bytes(s.request.tensor("text").elements()[0]).decode() for s in sent if s.request]
    assert texts == ["Hello there.", "How are you?", "Again."]


def test_whole_files_per_unit_without_stream_audio(gw):
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json({"type": "session.config", "voice": "alloy", "response_format": "wav"})
        ws.send_json({"type": "input.text", "text": "One. Two."})
        ws.send_json({"type": "input.done"})
        frames = until(ws, "session.done")
    (audio,) = [f for f in frames if isinstance(f, bytes)]  # split_granularity none: one unit
    assert audio[:4] == b"RIFF" and events(frames)[-1]["total_sentences"] == 1


def test_word_timings_ride_audio_chunks(gw):
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json(PCM | {"word_timestamps": True})
        ws.send_json({"type": "input.text", "text": "Good morning, world."})
        ws.send_json({"type": "input.done"})
        frames = until(ws, "session.done")
    assert not [f for f in frames if isinstance(f, bytes)]  # the audio rides the JSON chunks
    chunks = [e for e in events(frames) if e["type"] == "audio.chunk"]
    audio = b"".join(base64.b64decode(c["audio_b64"]) for c in chunks)
    assert len(audio) == 24000 and [c["chunk_id"] for c in chunks] == list(range(len(chunks)))
    assert all(c["timestamps"] is None for c in chunks[:-1])
    assert chunks[-1]["timestamps"] == [
        {"word": "Good", "start_ms": 0, "end_ms": 100},
        {"word": "morning,", "start_ms": 100, "end_ms": 200},
        {"word": "world.", "start_ms": 200, "end_ms": 300},
    ]
    (align,) = [s for s in gw.asr.seen if s.request and s.request.parameters.get("task") == "align"]
    assert align.request.parameters["text"] == "Good morning, world."


def test_bad_messages_are_error_events_and_the_session_goes_on(gateway_with):
    gw = gateway_with(speech_stream_max_buffer_chars=4096)
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json(PCM)
        bad = [
            (b"\x00binary", "binary frames are not accepted"),
            ("{nope", "Invalid JSON message"),
            ("[1]", "WebSocket messages must be JSON objects"),
            (json.dumps({"type": "input.text", "text": 5}), "input.text requires a string value"),
            (json.dumps({"type": "input.audio"}), "Unknown message type: input.audio"),
            (json.dumps({"type": "input.text", "text": "x" * 5000}), "buffered speech text exceeds 4096"),
            (json.dumps({"type": "session.config", "model": "nope"}), "the model 'nope' does not exist"),
        ]
        for frame, says in bad:
            ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_text(frame)
            assert says in until(ws, "error")[-1]["message"]
        ws.send_json({"type": "input.text", "text": "Half a sentence"})
        ws.send_json(PCM | {"voice": "Ana"})
        assert "utterance is in progress" in until(ws, "error")[-1]["message"]
        ws.send_json({"type": "input.done"})
        assert events(until(ws, "session.done"))[-1]["total_sentences"] == 1


def test_a_failed_unit_is_reported_and_the_next_one_is_spoken(gw):
    calls = []

    def fail_first(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return error(400, "voice 'x' is not available", code="voice_not_found")(request)
        samples = np.zeros(2400, "<f4")
        return httpx.Response(200, content=samples.tobytes(), headers={"x-sample-rate": "24000"})

    gw.tts.answer = fail_first
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json(PCM | {"split_granularity": "sentence"})
        ws.send_json({"type": "input.text", "text": "First. Second."})
        ws.send_json({"type": "input.done"})
        frames = events(until(ws, "session.done"))
    kinds = [e["type"] for e in frames]
    assert kinds == ["audio.start", "error", "audio.done", "audio.start", "audio.done", "session.done"]
    assert frames[1]["message"] == "Generation failed for utterance 0, sentence 0: voice 'x' is not available"
    assert frames[2]["error"] is True
    assert frames[4] == {"type": "audio.done", "utterance_index": 0, "sentence_index": 1, "total_bytes": 4800,
                         "error": False}  # fmt: skip


def test_the_first_message_must_be_a_config(gw):
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json({"type": "input.text", "text": "hi"})
        assert ws.receive_json() == {"type": "error", "message": "Expected session.config, got: input.text"}
        assert ws.receive()["type"] == "websocket.close"


def test_timeouts_end_the_session(gateway_with):
    gw = gateway_with(speech_stream_config_seconds=0.2, speech_stream_idle_seconds=0.5)
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        assert ws.receive_json()["message"] == "Timeout waiting for session.config"
    with gw.client.websocket_connect("/v1/audio/speech/stream") as ws:
        ws.send_json(PCM)
        assert ws.receive_json()["message"] == "Idle timeout: no message received"
        assert ws.receive()["type"] == "websocket.close"
    assert gw.client.app.state.speech_streams == 0


def test_keys_and_the_session_limit_are_checked_at_the_handshake(gateway_with):
    keyed = gateway_with(api_keys=KEYS)
    with pytest.raises(WebSocketDenialResponse) as denied:
        keyed.client.websocket_connect("/v1/audio/speech/stream").__enter__()
    assert denied.value.status_code == 401
    with keyed.client.websocket_connect("/v1/audio/speech/stream", headers={"Authorization": f"Bearer {KEYS[0]}"}):
        pass
    full = gateway_with(speech_stream_max_sessions=0)
    with pytest.raises(WebSocketDenialResponse) as busy:
        full.client.websocket_connect("/v1/audio/speech/stream").__enter__()
    assert busy.value.status_code == 429 and busy.value.headers["retry-after"]


# -- POST /v1/audio/speech with word_timestamps ------------------------------------------------------
SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello there. How are you?", "word_timestamps": True}


def test_a_whole_response_is_json_with_the_file_and_every_word(gw):
    r = gw.client.post("/v1/audio/speech", json=SPEECH | {"response_format": "wav"})
    body = r.json()
    assert r.status_code == 200 and base64.b64decode(body["audio"])[:4] == b"RIFF"
    assert body["duration"] == 1.0 and body["response_format"] == "wav"  # two sentences, 0.5 s each
    assert [(w["word"], w["start"]) for w in body["words"]] == [
        ("Hello", 0.0), ("there.", 0.1), ("How", 0.5), ("are", 0.6), ("you?", 0.7)
    ]  # fmt: skip


def test_sse_deltas_carry_their_sentences_words(gw):
    r = gw.client.post("/v1/audio/speech", json=SPEECH | {"stream_format": "sse", "response_format": "pcm"})
    payloads = [json.loads(line[6:]) for line in r.text.split("\n") if line.startswith("data: ")]
    deltas = [p for p in payloads if p["type"] == "speech.audio.delta"]
    assert [[w["word"] for w in d["words"]] for d in deltas if d["words"]] == [
        ["Hello", "there."],
        ["How", "are", "you?"],
    ]
    assert payloads[-1]["type"] == "speech.audio.done"


def test_timings_refuse_raw_streams_and_name_what_the_aligner_cannot_do(gw):
    r = gw.client.post("/v1/audio/speech", json=SPEECH | {"response_format": "mp3"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "word_timestamps"
    gw.asr.answer = error(
        400, "no alignment model serves language 'xx' (set one in ASR_ALIGN_MODELS)", param="language"
    )
    r = gw.client.post("/v1/audio/speech", json=SPEECH | {"response_format": "wav"})
    assert r.status_code == 400 and "language 'xx'" in r.json()["error"]["message"]
