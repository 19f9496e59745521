"""Realtime translation sessions (WS /v1/realtime/translations) against a real stack: Whisper base
hears espeak-ng German and French, translates it into English (its translate task) or through a tiny
M2M100 into other languages, and a tiny XTTS speaks the translation in the speaker's cloned voice; the
official SDK's translation client streams the audio at real-time pace. Then a target the speech model
cannot speak, a speech model that cannot clone (the shared VITS stack), bad events, the session limit
and a client that leaves."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from scripts.devstack import local_stack
from tests.conftest import start, whisper_models
from tests.support.espeak import speak
from tests.test_realtime import pcm24

GERMAN = "Mein Name ist Anna und ich wohne in einer kleinen Stadt."
ENGLISH = "My name is Anna and I live in a small town."
FRENCH = "Je voudrais un café et un croissant, s'il vous plaît."
FRAME_MS = 200
FRAME = 24000 * 2 * FRAME_MS // 1000


@pytest.fixture(scope="module")
def translation_stack(workdir, tiny) -> Any:
    refs = workdir / "translation-refs"
    refs.mkdir()
    default_ref = speak("This is the default reference voice for the tests.", refs / "default.wav")
    services = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_TRANSLATION_MODEL": str(tiny["m2m100"]),
        },
        tts_env={
            "TTS_MODEL": str(tiny["xtts"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(workdir / "translation-tts-home"),
            "TTS_DEFAULT_SPEAKER_WAV": str(default_ref),
            "TTS_DEFAULT_SPEAKER_URL": "",
            "TTS_STREAM_CHUNK_SIZE": "5",
        },
        gateway_env={"GATEWAY_TRANSLATION_MAX_SESSIONS": "2"},
    )
    start(services, workdir / "logs" / "translation")
    yield services
    for svc in reversed(services):
        svc.stop()


@pytest.fixture(scope="module")
def speech(workdir) -> dict[str, bytes]:
    out = workdir / "translation-speech"
    out.mkdir()
    return {
        "de": pcm24(speak(GERMAN, out / "de.wav", voice="de", rate=130)),
        "fr": pcm24(speak(FRENCH, out / "fr.wav", voice="fr", rate=130)),
    }


def overlap(reference: str, hypothesis: str) -> float:
    """The share of the reference's words the hypothesis has."""
    words = lambda text: {w.strip(".,!?;:'\"").lower() for w in text.split()} - {""}  # noqa: E731
    ref = words(reference)
    return len(ref & words(hypothesis)) / len(ref)


async def translate(base_url: str, audio: bytes, session: dict, *, model: str = "gpt-realtime-translate") -> list[Any]:
    """Stream ``audio`` then two seconds of silence at real-time pace (200 ms appends), close the
    session, and return every event up to ``session.closed``."""
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-test", max_retries=0)
    events: list[Any] = []
    async with client.realtime.translations.connect(model=model) as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.type == "translation"
        await conn.session.update(session=session)  # type: ignore[arg-type]
        updated = await conn.recv()
        assert updated.type == "session.updated", updated

        async def receive() -> None:
            async for event in conn:
                events.append(event)
                if event.type == "session.closed":
                    return

        reader = asyncio.create_task(receive())
        stream = audio + bytes(2 * 24000 * 2)
        started = time.monotonic()
        for i, at in enumerate(range(0, len(stream), FRAME)):
            await conn.send({"type": "session.input_audio_buffer.append",
                             "audio": base64.b64encode(stream[at : at + FRAME]).decode()})  # fmt: skip
            await asyncio.sleep(max(0.0, started + (i + 1) * FRAME_MS / 1000 - time.monotonic()))
        await conn.send({"type": "session.close"})
        await asyncio.wait_for(reader, 300)
    return events


def text_of(events: list[Any], kind: str) -> str:
    return "".join(e.delta for e in events if e.type == kind)


def audio_of(events: list[Any]) -> np.ndarray:
    deltas = [e for e in events if e.type == "session.output_audio.delta"]
    assert deltas, [e.type for e in events]
    assert all(e.sample_rate == 24000 and e.channels == 1 and e.format == "pcm16" for e in deltas)
    raw = b"".join(base64.b64decode(e.delta) for e in deltas)
    assert len(raw) % 2 == 0
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768


def test_german_speech_becomes_english_text_and_speech_in_the_speakers_voice(translation_stack, speech):
    url = translation_stack[-1].url
    session = {"audio": {"input": {"transcription": {"model": "whisper-1"}}, "output": {"language": "en"}}}
    events = asyncio.run(translate(url, speech["de"], session))
    kinds = [e.type for e in events]
    assert "error" not in kinds, [e for e in events if e.type == "error"]
    english, german = (
        text_of(events, "session.output_transcript.delta"),
        text_of(events, "session.input_transcript.delta"),
    )
    assert overlap(ENGLISH, english) >= 0.6, english  # Whisper base on espeak-ng's German: 0.9 here
    assert overlap(GERMAN, german) >= 0.6, german
    samples = audio_of(events)
    assert samples.size > 24000 // 2 and float(np.abs(samples).max()) > 0.01  # speech, not silence
    first_audio = kinds.index("session.output_audio.delta")
    assert first_audio < kinds.index("session.closed")
    assert kinds.index("session.output_transcript.delta") < first_audio  # the text leads its audio
    duration_ms = len(speech["de"]) // 48 + 2000
    stamped = [e for e in events if e.type != "session.closed"]
    assert all(e.elapsed_ms % 200 == 0 and 0 <= e.elapsed_ms <= duration_ms for e in stamped), stamped


def test_other_targets_go_through_the_translation_model_and_a_language_the_voice_lacks_is_text_only(
    translation_stack, speech
):
    url = translation_stack[-1].url
    french = asyncio.run(translate(url, speech["fr"], {"audio": {"output": {"language": "de"}}}))
    assert not [e for e in french if e.type == "error"]
    assert text_of(french, "session.output_transcript.delta").strip()  # the tiny model's words
    assert not text_of(french, "session.input_transcript.delta")  # no source transcript was asked for
    audio_of(french)  # tiny XTTS speaks German

    swedish = asyncio.run(translate(url, speech["fr"], {"audio": {"output": {"language": "sv"}}}))
    assert text_of(swedish, "session.output_transcript.delta").strip()
    errors = [e for e in swedish if e.type == "error"]
    assert [e.error.code for e in errors] == ["unsupported_language"], errors
    assert "sv" in errors[0].error.message
    assert not [e for e in swedish if e.type == "session.output_audio.delta"]


def test_a_speech_model_that_cannot_clone_speaks_in_the_configured_voice(gateway_url, speech):
    """The shared stack's TTS is VITS: the clone is refused once, the configured voice speaks."""
    events = asyncio.run(translate(gateway_url, speech["de"], {"audio": {"output": {"language": "en"}}}))
    errors = [e for e in events if e.type == "error"]
    assert [e.error.code for e in errors] == ["voice_cloning_unsupported"], errors
    assert overlap(ENGLISH, text_of(events, "session.output_transcript.delta")) >= 0.6
    audio_of(events)


def raw_session(url: str, query: str = "?model=whisper-1") -> Any:
    return connect(f"{url.replace('http', 'ws')}/v1/realtime/translations{query}", open_timeout=30)


def answer(ws: Any, event: dict | str) -> dict:
    ws.send(event if isinstance(event, str) else json.dumps(event))
    return json.loads(ws.recv(timeout=120))


def test_bad_handshakes_and_events_are_answered_and_the_session_goes_on(translation_stack):
    url = translation_stack[-1].url
    for query, code in (("", "missing_required_parameter"), ("?model=tts-1", "model_not_found")):
        with pytest.raises(InvalidStatus) as refused:
            raw_session(url, query).close()
        assert refused.value.response.status_code == 400
        assert json.loads(refused.value.response.body)["error"]["code"] == code
    with raw_session(url) as ws:
        created = json.loads(ws.recv(timeout=30))
        assert created["session"]["model"] == "whisper-1" and created["session"]["audio"]["output"]["language"] == "en"
        cases: list[tuple[dict | str, str, str | None]] = [
            ("{not json", "invalid_json", None),
            ({"type": "input_audio_buffer.commit"}, "invalid_value", "type"),
            ({"type": "session.input_audio_buffer.append", "audio": "%%%"}, "invalid_value", "audio"),
            ({"type": "session.input_audio_buffer.append", "audio": "AA=="}, "invalid_value", "audio"),  # odd bytes
            ({"type": "session.update", "session": {"audio": {"output": {"language": "english!"}}}},
             "invalid_value", "session.audio.output.language"),
            ({"type": "session.update", "session": {"audio": {"output": {"language": "xx"}}}},
             "unsupported_language", "session.audio.output.language"),
            ({"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": "tts-1"}}}}},
             "invalid_value", "session.audio.input.transcription.model"),
            ({"type": "session.update", "session": {"model": "other"}}, "invalid_value", "session.model"),
        ]  # fmt: skip
        for event, code, param in cases:
            error = answer(ws, event)
            assert error["type"] == "error", (event, error)
            assert (error["error"]["code"], error["error"]["param"]) == (code, param), (event, error)
        updated = answer(ws, {"type": "session.update", "session": {"audio": {"output": {"language": "fr"}}}})
        assert updated["type"] == "session.updated" and updated["session"]["audio"]["output"]["language"] == "fr"
        ws.send(json.dumps({"type": "session.close"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "session.closed"


def sessions_open(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(
        x for x in text.splitlines() if x.startswith("speech_gateway_websocket_sessions{") and "translations" in x
    )
    return float(line.split()[-1])


def test_the_session_limit_and_a_client_that_leaves(translation_stack, speech):
    url = translation_stack[-1].url
    first, second = raw_session(url), raw_session(url)
    with pytest.raises(InvalidStatus) as refused:
        raw_session(url).close()
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["retry-after"]
    for ws in (first, second):  # speech mid-sentence, then gone without a close frame
        json.loads(ws.recv(timeout=30))
        for at in range(0, len(speech["de"]) // 2, FRAME):
            ws.send(json.dumps({"type": "session.input_audio_buffer.append",
                                "audio": base64.b64encode(speech["de"][at : at + FRAME]).decode()}))  # fmt: skip
        ws.socket.close()
    deadline = time.monotonic() + 60
    while sessions_open(url) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sessions_open(url) == 0
    with raw_session(url) as ws:  # the places are free again
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"


def test_translation_metrics_have_each_stage(translation_stack):
    text = httpx.get(f"{translation_stack[-1].url}/metrics", timeout=10).text
    for stage in ("transcribe", "translate", "synthesize", "first_audio"):
        assert f'speech_gateway_translation_seconds_count{{stage="{stage}"}}' in text, stage
