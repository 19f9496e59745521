"""ASR pieces in isolation: sampling options reaching CTranslate2 (a fake model at that boundary),
temperature fallback, speaker naming, option typing, capped audio decoding."""

import io
import threading
from concurrent.futures import Future
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from services.asr.audio import AudioTooLong, BadAudio, decode
from services.asr.batcher import CallKey
from services.asr.decoding import Sampling, avg_logprob, decode_chunks, fall_back, looks_failed
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


KEY = CallKey(
    beam_size=5,
    patience=1.0,
    length_penalty=1.0,
    repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    suppress_blank=True,
    suppress_tokens=(-1,),
    max_length=448,
    temperature=0.0,
    logprobs=False,
    prompt_length=4,
    timestamps=False,
)


def decode_at(fake: FakeCT2, temperature: float):
    """One segment decoded at this temperature, as the batcher calls the model."""
    return fake.generate("features", ["prompt"], **replace(KEY, temperature=temperature).generate_kwargs())[0]


def settle(fake: FakeCT2, sampling: Sampling, text: str = "plain words"):
    """A chunk's first decode, then OpenAI's fallback where it applies (as ``ChunkRequest.settle``)."""
    kwargs = {"length_penalty": 1.0}

    def fails(result) -> bool:
        return looks_failed(result, sampling, lambda tokens: text, kwargs)

    first = decode_at(fake, sampling.temperature)
    if not (sampling.fallback and sampling.temperature == 0 and fails(first)):
        return first, sampling.temperature
    return fall_back(first, lambda t: decode_at(fake, t), sampling, fails, lambda r: avg_logprob(r, kwargs))


def test_temperature_reaches_ctranslate2_as_sampling():
    fake = FakeCT2({})
    _, temperature = settle(fake, Sampling(temperature=0.7))
    (call,) = fake.calls
    assert call["sampling_temperature"] == 0.7 and call["sampling_topk"] == 0 and call["beam_size"] == 1
    assert temperature == 0.7


def test_zero_temperature_decodes_without_sampling():
    fake = FakeCT2({})
    settle(fake, Sampling(temperature=0.0, fallback=True))
    (call,) = fake.calls
    assert "sampling_temperature" not in call and call["beam_size"] == 5


def test_fallback_redecodes_unlikely_segments_at_rising_temperatures():
    # score -8 over 3 tokens -> avg log-prob -2 (< -1: failed) at 0.0 and 0.2; fine from 0.4
    fake, counted = FakeCT2({0.0: -8.0, 0.2: -8.0, 0.4: -0.4}), []
    result, temperature = settle(
        fake, Sampling(temperature=0.0, fallback=True, redecoded=lambda t, n: counted.append((t, n)))
    )
    assert [c.get("sampling_temperature", 0.0) for c in fake.calls] == [0.0, 0.2, 0.4]
    assert counted == [(0.2, 1), (0.4, 1)]  # what the fallback metric counts
    assert temperature == 0.4 and result.scores == [-0.4]


def test_fallback_catches_repetitive_text_and_can_be_switched_off():
    fake = FakeCT2({})
    settle(fake, Sampling(temperature=0.0, fallback=True), text="la " * 200)
    assert len(fake.calls) == 6  # 0.0 then every fallback temperature: the text stays repetitive
    fake = FakeCT2({})
    settle(fake, Sampling(temperature=0.0, fallback=False), text="la " * 200)
    assert len(fake.calls) == 1


class CountingRequest:
    """A request at the decoding loop's boundary: counts the chunks submitted and not yet taken."""

    def __init__(self) -> None:
        self.sampling = Sampling()
        self.cancel: threading.Event | None = None
        self.outstanding = self.most = 0

    def submit(self, chunk, temperature):
        self.outstanding += 1
        self.most = max(self.most, self.outstanding)
        future: Future = Future()
        future.set_result(chunk["n"])
        return future

    def settle(self, chunk, result):
        self.outstanding -= 1
        return result, 0.0

    def segment(self, i, chunk, result, temperature):
        return {"id": i, "text": f" {result}"}


def test_a_long_file_holds_a_window_of_chunks_not_all_of_them():
    """Features are made when a chunk is submitted (about 1 MB each): a two-hour file must not hold
    240 chunks' worth at once."""
    request = CountingRequest()
    chunks = [{"n": n} for n in range(240)]
    texts = []
    segments = decode_chunks(request, chunks, window=4, on_text=lambda text, _: texts.append(text))
    assert [s["text"] for s in segments] == [f" {n}" for n in range(240)] == texts
    assert request.most == 4


def test_speakers_are_named_once_for_segments_and_their_words():
    segments: list[dict[str, Any]] = [
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


def test_a_long_prompt_keeps_only_what_whisper_reads():
    prompt = "start " + "word " * 20_000 + "the end"
    options = options_from({"model": "whisper-1", "prompt": prompt})
    assert options.prompt is not None and len(options.prompt) == 2000 and options.prompt.endswith("word the end")
    assert options_from({"model": "whisper-1", "prompt": "short"}).prompt == "short"


@pytest.mark.parametrize("text", [" Le garçon a mangé une pêche à l'école.", " 🎉 party", " Ærøskøbing", " 鬱"])
def test_logprob_bytes_rebuild_text_whose_characters_span_tokens(text):
    """With Whisper base's real tokenizer: a character split over tokens (emoji, Æ) has its bytes spread
    over the items, and the items' bytes joined are exactly the text (deterministic, unlike a decode)."""
    from tokenizers import Tokenizer

    from services.asr.decoding import openai_logprobs
    from tests.conftest import WHISPER

    tokenizer = Tokenizer.from_file(str(WHISPER / "tokenizer.json"))
    eot = tokenizer.token_to_id("<|endoftext|>")
    ids = [50258, *tokenizer.encode(text, add_special_tokens=False).ids, eot]  # special tokens are left out
    items = openai_logprobs(tokenizer, [(i, -0.5) for i in ids], eot)
    assert len(items) == len(ids) - 2 and all(item["logprob"] == -0.5 for item in items)
    assert bytes(b for item in items for b in item["bytes"]).decode("utf-8") == text
