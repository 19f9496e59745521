"""Speech through the official openai client; audio decoded back with PyAV."""

import openai
import pytest

from tests.support.errors import error_of
from tests.support.espeak import decode, duration

TEXT = "Today is a wonderful day to build something people love."


def speech(client, **kwargs) -> bytes:
    args = {"model": "tts-1", "voice": "alloy", "input": TEXT} | kwargs
    return client.audio.speech.create(**args).content


def test_wav_is_decodable_24khz_with_plausible_duration(client):
    data = speech(client, response_format="wav")
    samples, rate = decode(data)
    assert data[:4] == b"RIFF" and rate == 24000
    assert 0.3 < len(samples) / rate < 30


def test_pcm_is_raw_s16le_at_24khz(client):
    response = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
    )
    assert response.headers["x-sample-rate"] == "24000"
    pcm = response.content
    assert len(pcm) % 2 == 0
    wav_seconds = duration(speech(client, response_format="wav"))
    assert abs(len(pcm) / 2 / 24000 - wav_seconds) < 0.05


@pytest.mark.parametrize(("fmt", "container"), [("mp3", "mp3"), ("opus", "ogg"), ("aac", "aac"), ("flac", "flac")])
def test_every_format_decodes(client, fmt, container):
    data = speech(client, response_format=fmt)
    samples, rate = decode(data)
    assert rate in (24000, 48000) and 0.3 < len(samples) / rate < 30


def test_duration_scales_with_input_and_speed(client):
    short = duration(speech(client, response_format="wav", input="Hello there."))
    long = duration(speech(client, response_format="wav", input="Hello there. " * 6))
    fast = duration(speech(client, response_format="wav", input="Hello there. " * 6, speed=2.0))
    assert long > 3 * short
    assert 0.35 < fast / long < 0.65


def test_every_public_model_and_unknown_voice_fall_back(client):
    for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "coqui-tts"):
        assert decode(speech(client, model=model, voice="no-such-voice", response_format="wav"))[0].size


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "gpt-nope"}, "model"),
        ({"input": ""}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"speed": 5.0}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
    ],
)
def test_bad_requests_are_400_with_param(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as err:
        speech(client, **kwargs)
    assert err.value.param == param
    assert error_of(err.value)["type"] == "invalid_request_error"


def test_wrong_json_types_are_400(gateway_url):
    import httpx

    r = httpx.post(f"{gateway_url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = httpx.post(f"{gateway_url}/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
