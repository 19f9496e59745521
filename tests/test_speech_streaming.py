"""Streamed speech: chunked audio as it is synthesised, and OpenAI's SSE events, via the official client."""

import base64
import json

import pytest

from tests.support.espeak import decode, duration

TEXT = "Hello there. This is the second sentence. And here is a third one for good measure."


def chunks(client, **kwargs) -> tuple[list[bytes], dict]:
    args = {"model": "tts-1", "voice": "alloy", "input": TEXT} | kwargs
    with client.audio.speech.with_streaming_response.create(**args) as response:
        return [c for c in response.iter_bytes() if c], dict(response.headers)


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [("mp3", {}), ("opus", {}), ("aac", {}), ("pcm", {}), ("wav", {"stream": True}), ("flac", {"stream": True})],
)
def test_streamed_bytes_form_a_valid_file(client, fmt, extra):
    parts, headers = chunks(client, response_format=fmt, extra_body=extra)
    assert len(parts) > 1, "expected audio to arrive in several chunks"
    assert "content-length" not in headers  # chunked: sent as synthesised, not buffered
    data = b"".join(parts)
    whole = client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav", extra_body={"stream": False}
    ).content
    if fmt == "pcm":
        streamed_seconds = len(data) / 2 / 24000
    else:
        samples, rate = decode(data)
        streamed_seconds = len(samples) / rate
    # sentence-by-sentence synthesis of a random model differs slightly from one whole pass
    assert abs(streamed_seconds - duration(whole)) < 0.25 * duration(whole) + 0.1


def test_whole_wav_has_exact_header_and_streamed_wav_open_ended(client):
    whole = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="wav").content
    assert int.from_bytes(whole[4:8], "little") == len(whole) - 8
    parts, _ = chunks(client, response_format="wav", extra_body={"stream": True})
    assert b"".join(parts)[4:8] == b"\xff\xff\xff\xff"


def test_sse_events(client):
    args = {"model": "tts-1", "voice": "echo", "input": TEXT, "response_format": "mp3", "stream_format": "sse"}
    with client.audio.speech.with_streaming_response.create(**args) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    deltas, done = events[:-1], events[-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == len(TEXT)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    samples, rate = decode(audio)
    assert rate == 24000 and abs(len(samples) / rate - usage["output_tokens"] / 50) < 0.2


def test_streamed_speed_scales_duration(client):
    slow = b"".join(chunks(client, response_format="pcm", speed=0.5)[0])
    fast = b"".join(chunks(client, response_format="pcm", speed=2.0)[0])
    assert 3.0 < len(slow) / len(fast) < 5.0


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
@pytest.mark.parametrize("stream", [True, False])
def test_ffprobe_accepts_every_container(client, fmt, stream, tmp_path):
    """The container headers are right for a standard tool, whole or streamed."""
    import subprocess

    data = b"".join(chunks(client, response_format=fmt, extra_body={"stream": stream})[0])
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stderr == ""
    stream_info = json.loads(probe.stdout)["streams"][0]
    expected = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}[fmt]
    assert stream_info["codec_name"] == expected and stream_info["channels"] == 1
