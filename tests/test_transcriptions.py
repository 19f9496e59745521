"""Transcription and translation through the official openai client against the running stack."""

import openai
import pytest

from tests.support.espeak import transcode
from tests.support.text import normalize, wer

# Whisper base (int8) on espeak-ng's synthetic voice (tests/support/espeak.py, undithered) measures 0.068
# word error rate over these five sentences ("round" for "brown", "jump" for "jumps", ...; 0.114 over the
# first three). The bound leaves room for CPU-kernel differences while still failing on any real
# regression (wrong model, broken decoding, lost segments, bad resampling all push it far above 0.3).
WER_BOUND = 0.25


def test_word_error_rate_of_real_whisper_base(client, spoken):
    texts = list(spoken)
    hyps = [client.audio.transcriptions.create(model="whisper-1", file=spoken[t].open("rb")).text for t in texts]
    score = wer(texts, hyps)
    assert score < WER_BOUND


def test_json_has_text_and_duration_usage(client, spoken):
    wav = next(iter(spoken.values()))
    result = client.audio.transcriptions.create(model="turbo", file=wav.read_bytes())
    assert "lazy dog" in normalize(result.text)
    assert result.usage.type == "duration" and 3.0 < result.usage.seconds < 6.0


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_subtitle_and_text_formats(client, spoken, fmt):
    wav = next(iter(spoken.values()))
    body = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), response_format=fmt)
    assert isinstance(body, str) and "lazy dog" in normalize(body)
    if fmt == "srt":
        assert body.startswith("1\n00:00:00,") and " --> " in body
    if fmt == "vtt":
        assert body.startswith("WEBVTT\n\n00:00:00.")


def test_verbose_json_segments(client, spoken):
    wav = next(iter(spoken.values()))
    result = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), response_format="verbose_json")
    assert result.language == "english" and 3.0 < result.duration < 6.0
    assert result.segments, "no segments"
    for seg in result.segments:
        assert 0 <= seg.start < seg.end <= result.duration + 0.5
        assert seg.tokens and seg.avg_logprob <= 0 and 0 <= seg.no_speech_prob <= 1
        assert seg.compression_ratio > 0 and seg.temperature == 0.0


@pytest.mark.parametrize(
    ("container", "codec"),
    [
        ("mp3", "libmp3lame"),
        ("ogg", "libopus"),
        ("flac", "flac"),
        ("adts", "aac"),
        ("webm", "libopus"),
        ("ipod", "aac"),
        ("mp4", "aac"),
        ("wav", "pcm_s16le"),
    ],
)
def test_accepts_containers_by_content_not_name(client, spoken, container, codec):
    wav = next(iter(spoken.values()))
    data = transcode(wav, container, codec, rate=48000 if codec == "libopus" else 16000)
    upload = ("upload.bin", data, "application/octet-stream")
    result = client.audio.transcriptions.create(model="whisper-1", file=upload)
    assert "lazy dog" in normalize(result.text)


def test_translation_json(client, spoken):
    wav = next(iter(spoken.values()))
    result = client.audio.translations.create(model="whisper-1", file=wav.open("rb"))
    assert "fox" in normalize(result.text)


@pytest.mark.parametrize(
    ("data", "needle"),
    [(b"", "empty"), (b"this is not audio at all" * 50, "decode"), (b"RIFF\x24\x00\x00\x00WAVEfmt ", "decode")],
)
def test_bad_files_are_400(client, data, needle):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", data, "audio/wav"))
    assert needle in err.value.message.lower()


def test_unknown_model_and_language_are_400(client, spoken):
    wav = next(iter(spoken.values()))
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-9", file=wav.open("rb"))
    assert err.value.param == "model" and err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), language="xx")
    assert "language" in err.value.message


def test_concurrent_requests_on_one_loaded_model(client, spoken):
    """Requests queue on the model's lock; every answer belongs to its own audio."""
    from concurrent.futures import ThreadPoolExecutor

    texts = list(spoken)
    with ThreadPoolExecutor(3) as pool:
        hyps = list(
            pool.map(
                lambda t: client.audio.transcriptions.create(model="whisper-1", file=spoken[t].read_bytes()).text, texts
            )
        )
    assert wer(texts, hyps) < WER_BOUND, hyps
    for text, hyp in zip(texts, hyps, strict=False):  # closest to its own sentence, not to another request's
        assert wer([text], [hyp]) == min(wer([other], [hyp]) for other in texts), (text, hyp)


def test_bad_form_value_is_400_with_param(client, spoken):
    wav = next(iter(spoken.values()))
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), temperature=3.0)
    assert err.value.param == "temperature"
