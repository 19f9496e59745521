"""Realtime translation's pieces in process: the session configuration as the SDK sends and parses
it, the speaker's reference (what is kept, and its bounds), elapsed_ms steps."""

from __future__ import annotations

import io
import wave

import pytest
from openai.types.realtime.realtime_translation_session import RealtimeTranslationSession

from services.gateway.realtime.config import ConfigError
from services.gateway.translation.config import TranslationConfig
from services.gateway.translation.session import step
from services.gateway.translation.speaker import RATE, RING_SECONDS, SpeakerReference

BASE = TranslationConfig(model="gpt-realtime-translate", whisper="whisper-1")


def test_updates_change_only_what_is_given_and_render_as_the_sdk_parses():
    config = BASE.update({"audio": {"input": {"transcription": {"model": "whisper-1"}}}})
    config = config.update({"type": "translation", "audio": {"output": {"language": "FR"}}})
    assert (config.transcription, config.language, config.voice) == ("whisper-1", "fr", "speaker")
    assert config.update({"audio": {"input": {"transcription": None}}}).transcription is None
    assert config.update({"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}) == config
    parsed = RealtimeTranslationSession.model_validate(config.render("sess_1", 123))
    assert parsed.type == "translation" and parsed.model == "gpt-realtime-translate"
    assert parsed.audio.output is not None and parsed.audio.output.language == "fr"
    assert parsed.audio.input is not None and parsed.audio.input.transcription is not None
    assert parsed.audio.input.transcription.model == "whisper-1"
    wired = config.wire()
    assert wired["translate_to"] == "fr" and wired["model"] == "whisper-1" and wired["delay"] == "low"
    assert BASE.wire()["delay"] == "xhigh"  # no source transcript asked for: no partial decodes
    assert wired["transcript"] and not BASE.wire()["transcript"]  # ... and no transcribing decode


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ("nope", "session"),
        ({"type": "transcription"}, "session.type"),
        ({"model": "other"}, "session.model"),
        ({"audio": []}, "session.audio"),
        ({"audio": {"output": {"language": "english"}}}, "session.audio.output.language"),
        ({"audio": {"output": {"language": 7}}}, "session.audio.output.language"),
        ({"audio": {"output": {"voice": ""}}}, "session.audio.output.voice"),
        ({"audio": {"input": {"transcription": {"model": ""}}}}, "session.audio.input.transcription.model"),
        ({"audio": {"input": {"noise_reduction": {"type": "loud"}}}}, "session.audio.input.noise_reduction"),
    ],
)
def test_bad_updates_name_the_field(session, param):
    with pytest.raises(ConfigError) as refused:
        BASE.update(session)
    assert refused.value.param == param


def pcm(seconds: float, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * int(seconds * RATE)


def test_the_reference_keeps_the_turns_speech_up_to_its_limit_and_then_no_ring():
    ref = SpeakerReference(seconds=3)
    ref.heard(pcm(1, 0) + pcm(1.5) + pcm(0.5, 0), at=0)
    assert ref.wav() is None  # nothing said yet
    ref.turn(1000, 2500)
    assert len(ref.speech) == int(1.5 * RATE) * 2 and set(ref.speech[:2]) != {0}
    with wave.open(io.BytesIO(ref.wav() or b"")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (RATE, 1, int(1.5 * RATE))
    ref.heard(pcm(4), at=3 * RATE)
    ref.turn(3000, 7000)
    assert ref.full and len(ref.speech) == 3 * RATE * 2  # bounded by its limit
    ref.heard(pcm(1), at=7 * RATE)
    assert not ref.ring  # full: the input is no longer kept


def test_the_ring_keeps_only_the_latest_seconds():
    ref = SpeakerReference(seconds=10)
    ref.heard(pcm(RING_SECONDS + 5), at=0)
    assert len(ref.ring) == RING_SECONDS * RATE * 2 and ref.ring_start == 5 * RATE
    ref.turn(0, 1000)  # gone from the ring: nothing is invented
    assert not ref.speech
    ref.turn(5000, 6500)
    assert len(ref.speech) == int(1.5 * RATE) * 2


def test_elapsed_ms_moves_in_200_ms_steps():
    assert [step(ms) for ms in (0, 199, 200, 1234)] == [0, 0, 200, 1200]
