"""ASR pieces in isolation: sampling options reaching CTranslate2 (a fake model at that boundary),
temperature fallback, speaker naming, option typing, capped audio decoding."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from services.asr.audio import AudioTooLong, BadAudio, decode
from services.asr.decoding import DecodeHooks, Sampling
from services.asr.diarization import name_speakers
from services.asr.job import UnsupportedOption, options_from


class FakeCT2:
    """CTranslate2's Whisper ``generate`` at the boundary: records every call's options and answers
    with scripted scores (log-probability sums) per temperature."""

    def __init__(self, score_at: dict[float, float]) -> None:
        self.calls: list[dict] = []
        self.score_at = score_at

    def generate(self, features, prompts, **kwargs):
        self.calls.append(kwargs)
        temperature = kwargs.get("sampling_temperature", 0.0)
        score = self.score_at.get(temperature, -0.1)
        return [
            SimpleNamespace(sequences_ids=[[10, 11, 12]], scores=[score], no_speech_prob=0.01, logits=[[]])
            for _ in prompts
        ]


def hooks_for(fake, sampling, text="plain words"):
    hooks = DecodeHooks(fake)
    hooks.reset(sampling=sampling, text_of=lambda tokens: text)
    return hooks


def test_temperature_reaches_ctranslate2_as_sampling():
    fake = FakeCT2({})
    hooks = hooks_for(fake, Sampling(temperature=0.7))
    hooks.generate("features", ["p1", "p2"], beam_size=5, length_penalty=1.0)
    (call,) = fake.calls
    assert call["sampling_temperature"] == 0.7 and call["sampling_topk"] == 0 and call["beam_size"] == 1
    assert [d.temperature for d in hooks.decoded] == [0.7, 0.7]


def test_zero_temperature_decodes_without_sampling():
    fake = FakeCT2({})
    hooks_for(fake, Sampling(temperature=0.0, fallback=True)).generate("f", ["p"], beam_size=5, length_penalty=1.0)
    (call,) = fake.calls
    assert "sampling_temperature" not in call and call["beam_size"] == 5


def test_fallback_redecodes_unlikely_segments_at_rising_temperatures():
    # score -8 over 3 tokens -> avg log-prob -2 (< -1: failed) at 0.0 and 0.2; fine from 0.4
    fake, counted = FakeCT2({0.0: -8.0, 0.2: -8.0, 0.4: -0.4}), []
    hooks = hooks_for(fake, Sampling(temperature=0.0, fallback=True, redecoded=lambda t, n: counted.append((t, n))))
    results = hooks.generate("f", ["p"], beam_size=5, length_penalty=1.0)
    assert [c.get("sampling_temperature", 0.0) for c in fake.calls] == [0.0, 0.2, 0.4]
    assert counted == [(0.2, 1), (0.4, 1)]  # what the fallback metric counts
    assert hooks.decoded[0].temperature == 0.4 and results[0].scores == [-0.4]


def test_fallback_catches_repetitive_text_and_can_be_switched_off():
    fake = FakeCT2({})
    hooks_for(fake, Sampling(temperature=0.0, fallback=True), text="la " * 200).generate("f", ["p"], length_penalty=1.0)
    assert len(fake.calls) == 6  # 0.0 then every fallback temperature: the text stays repetitive
    fake = FakeCT2({})
    hooks_for(fake, Sampling(temperature=0.0, fallback=False), text="la " * 200).generate(
        "f", ["p"], length_penalty=1.0
    )
    assert len(fake.calls) == 1


def test_speakers_are_named_once_for_segments_and_their_words():
    segments = [
        {"speaker": "SPEAKER_01", "words": [{"speaker": "SPEAKER_01"}, {"speaker": "SPEAKER_00"}]},
        {"speaker": "SPEAKER_00", "words": [{"speaker": "SPEAKER_00"}, {}]},
        {"speaker": "SPEAKER_02", "words": [{"speaker": "SPEAKER_02"}]},
    ]
    name_speakers(segments, {"SPEAKER_00": "agent"})
    assert [s["speaker"] for s in segments] == ["A", "agent", "B"]
    assert [w.get("speaker") for s in segments for w in s["words"]] == ["A", "agent", "agent", None, "B"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"model": "m", "temperature": "hot"}, "temperature"),
        ({"model": "m", "min_speakers": 1.5}, "min_speakers"),
        ({"model": "m", "diarize": "yes"}, "diarize"),
        ({"model": "m", "known_speaker_names": "ann"}, "known_speaker_names[]"),
    ],
)
def test_option_types_are_checked(params, param):
    with pytest.raises(UnsupportedOption) as err:
        options_from(params)
    assert err.value.param == param


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_decode_reads_in_place_and_resamples():
    audio = decode(memoryview(wav_bytes(1.0, 22050)), max_seconds=10)
    assert abs(audio.size - 16000) < 200 and audio.dtype == np.float32


def test_decode_stops_at_the_duration_limit():
    with pytest.raises(AudioTooLong) as err:
        decode(wav_bytes(3.0), max_seconds=2)
    assert err.value.code == "audio_too_long" and "2 seconds" in err.value.message


def test_decode_refuses_what_is_not_audio():
    for data in (b"", b"hello world" * 100, b"RIFF\x00\x00"):
        with pytest.raises(BadAudio):
            decode(data, max_seconds=10)
