"""Word timestamps, WhisperX detail, diarization and streaming through the official client."""

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.support.errors import error_of
from tests.support.text import normalize


@pytest.fixture(scope="module")
def wav(spoken):
    return next(iter(spoken.values()))


def check_words(words, duration):
    assert words, "no words"
    for w in words:
        assert w.word.strip() and 0 <= w.start <= w.end <= duration + 0.01


def test_word_and_segment_granularities(client, wav):
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=wav.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    check_words(result.words, result.duration)
    assert normalize(" ".join(w.word for w in result.words)) == normalize(result.text)
    assert result.segments and all(s.no_speech_prob is not None for s in result.segments)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)


def test_word_only_granularity_omits_segments(client, wav):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=wav.open("rb"), response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert result.segments is None and result.words


def test_advanced_returns_aligned_words_per_segment(client, wav):
    result = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), extra_body={"advanced": "true"})
    body = result.to_dict()
    assert body["task"] == "transcribe" and body["words"]
    for seg in body["segments"]:
        for w in seg["words"]:
            assert seg["start"] <= w["start"] <= w["end"] <= seg["end"] and 0 <= w["score"] <= 1


def test_diarization_labels_within_bounds(client, dialog):
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=dialog.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        extra_body={"diarize": "true", "min_speakers": 1, "max_speakers": 2},
    )
    speakers = {s.to_dict()["speaker"] for s in result.segments}
    assert speakers and speakers <= {"A", "B"}
    assert all(w.to_dict().get("speaker") in {"A", "B"} for w in result.words)
    assert "morning" in normalize(result.text)


def test_advanced_diarized_labels_agree_top_level_and_per_segment(client, dialog):
    """advanced + diarize: every word's speaker, in ``words`` and in each segment's ``words``, is the
    client-facing label (A, B, ...) and matches its segment's."""
    body = client.audio.transcriptions.create(
        model="whisper-1",
        file=dialog.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        extra_body={"advanced": "true", "diarize": "true", "max_speakers": 2},
    ).to_dict()
    nested = [w["speaker"] for seg in body["segments"] for w in seg["words"]]
    assert nested and set(nested) <= {"A", "B"}, nested
    assert [w["speaker"] for w in body["words"]] == nested
    assert {s["speaker"] for s in body["segments"]} <= {"A", "B"}


def test_diarized_json(client, dialog):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=dialog.open("rb"), response_format="diarized_json", extra_body={"max_speakers": 2}
    )
    assert result.task == "transcribe" and result.segments
    for seg in result.segments:
        assert seg.type == "transcript.text.segment" and seg.speaker in {"A", "B"} and seg.start < seg.end
    assert result.text.splitlines()[0].startswith(result.segments[0].speaker + ": ")


def joined_text(logprobs) -> str:
    return bytes(int(b) for item in logprobs for b in item.bytes).decode("utf-8").strip()


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", None),
        ("fr", "Le garçon a mangé une pêche à l'école."),
    ],
)
def test_logprobs_cover_the_text_token_by_token(client, wav, workdir, language, sentence):
    """include[]=logprobs: one item per emitted token whose UTF-8 bytes rebuild the text exactly,
    each a log-probability of the real model. What French words Whisper base hears in espeak-ng's
    voice is its own affair (a greedy decode once looped on "m'en"): only the English clip's
    confidence is asserted; characters split over tokens are checked deterministically in
    tests/unit/test_asr_units.py."""
    from tests.support.espeak import speak

    audio = wav if sentence is None else speak(sentence, workdir / "french.wav", voice="fr")
    result = client.audio.transcriptions.create(
        model="whisper-1", file=audio.open("rb"), language=language, include=["logprobs"]
    )
    assert result.logprobs and joined_text(result.logprobs) == result.text
    assert all(item.logprob <= 0 and item.token for item in result.logprobs)
    if sentence is None:
        mean = sum(item.logprob for item in result.logprobs) / len(result.logprobs)
        assert mean > -1.5, mean  # Whisper base is confident on the clear English clip
    plain = client.audio.transcriptions.create(model="whisper-1", file=audio.open("rb"), language=language)
    assert "logprobs" not in plain.to_dict()


def test_language_is_detected_per_request(client, wav, workdir):
    """A request without ``language`` detects it afresh, whatever the request before it asked for."""
    from tests.support.espeak import speak

    french = speak("Bonjour, je voudrais un café et un croissant, s'il vous plaît.", workdir / "fr2.wav", voice="fr")
    first = client.audio.transcriptions.create(
        model="whisper-1", file=french.open("rb"), language="fr", response_format="verbose_json"
    )
    assert first.language == "french"
    detected = client.audio.transcriptions.create(
        model="whisper-1", file=wav.open("rb"), response_format="verbose_json"
    )
    assert detected.language == "english" and "lazy dog" in normalize(detected.text)
    back = client.audio.transcriptions.create(model="whisper-1", file=french.open("rb"), response_format="verbose_json")
    assert back.language == "french"


def test_newer_model_fields_are_accepted_and_ignored(client, wav):
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=wav.open("rb"),
        chunking_strategy={"type": "server_vad", "threshold": 0.5},
        extra_body={"languages[]": ["en"], "keywords[]": ["fox"]},
    )
    assert "fox" in normalize(result.text)


def test_streamed_logprobs_ride_on_deltas(client, spoken):
    wav = list(spoken.values())[1]
    events = list(
        client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), stream=True, include=["logprobs"])
    )
    deltas, done = events[:-1], events[-1]
    assert deltas and all(e.logprobs for e in deltas)
    assert [x.to_dict() for e in deltas for x in e.logprobs] == [x.to_dict() for x in done.logprobs]
    assert joined_text(done.logprobs) == done.text


def data_url(path) -> str:
    import base64

    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def references(workdir):
    """Other sentences in the dialog's two voices."""
    from tests.support.espeak import speak

    agent = speak("Thank you for calling, how can I help you today?", workdir / "ref-agent.wav", voice="en-us")
    customer = speak(
        "I would like to check the status of my order please.", workdir / "ref-customer.wav", voice="en-gb+f3", rate=140
    )
    return agent, customer


def test_known_speakers_name_the_diarized_speakers(client, dialog, references):
    """known_speaker_names[]/references[]: diarized speakers matched to a reference take its name
    (the tiny random embedding model cannot promise which; the pairing is one to one)."""
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=dialog.open("rb"),
        response_format="diarized_json",
        known_speaker_names=["agent", "customer"],
        known_speaker_references=[data_url(r) for r in references],
    )
    speakers = [seg.speaker for seg in result.segments]
    assert set(speakers) & {"agent", "customer"}, speakers
    assert set(speakers) <= {"agent", "customer", "A", "B"}
    assert result.text.splitlines()[0].startswith(f"{speakers[0]}: ")


@pytest.mark.parametrize(
    ("fields", "param", "needle"),
    [
        ({"known_speaker_names": ["agent"], "known_speaker_references": []}, "known_speaker_references[]", "pair"),
        (
            {"known_speaker_names": ["agent"], "known_speaker_references": ["aGVsbG8="]},
            "known_speaker_references[]",
            "data URL",
        ),
        (
            {"known_speaker_names": ["agent"], "known_speaker_references": ["data:audio/wav;base64,AAA"]},
            "known_speaker_references[]",
            "base64",
        ),
        (
            {"known_speaker_names": ["a", "a"], "known_speaker_references": ["data:audio/wav;base64,AAAA"] * 2},
            "known_speaker_names[]",
            "distinct",
        ),
        (
            {
                "known_speaker_names": ["agent"],
                "known_speaker_references": ["data:audio/wav;base64,AAAA"],
                "response_format": "json",
            },
            "known_speaker_names[]",
            "diarized_json",
        ),
        (
            {"known_speaker_names": list("abcde"), "known_speaker_references": ["data:audio/wav;base64,AAAA"] * 5},
            "known_speaker_names[]",
            "at most 4",
        ),
    ],
)
def test_bad_known_speakers_are_400(client, dialog, fields, param, needle):
    fields = {"response_format": "diarized_json", **fields}
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=dialog.open("rb"), **fields)
    assert err.value.param == param and needle in err.value.message


def test_known_speaker_reference_must_be_audio_of_2_to_10_seconds(client, dialog, workdir):
    short = workdir / "short.wav"
    sf.write(short, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    for reference, needle in [
        (data_url(short), "2 to 10 seconds"),
        ("data:audio/wav;base64," + "QUJD" * 100, "decode"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(
                model="whisper-1",
                file=dialog.open("rb"),
                response_format="diarized_json",
                known_speaker_names=["agent"],
                known_speaker_references=[reference],
            )
        assert needle in err.value.message and "known_speaker_references[0] (agent)" in err.value.message


def test_streaming_deltas_then_done(client, spoken):
    wav = list(spoken.values())[1]
    events = list(client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds[:-1] and set(kinds[:-1]) == {"transcript.text.delta"}
    assert normalize("".join(e.delta for e in events[:-1])) == normalize(events[-1].text)
    assert "meeting" in normalize(events[-1].text)


def test_streaming_diarized_segments(client, dialog):
    events = list(
        client.audio.transcriptions.create(
            model="whisper-1", file=dialog.open("rb"), stream=True, response_format="diarized_json"
        )
    )
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert segments and all(e.speaker in {"A", "B"} for e in segments) and events[-1].type == "transcript.text.done"


def test_streaming_errors_before_the_stream_are_http_errors(client, wav):
    with pytest.raises(openai.BadRequestError):
        list(client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), stream=True, language="xx"))


def test_sse_wire_framing(gateway_url, wav):
    with httpx.stream(
        "POST",
        f"{gateway_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "stream": "true"},
        files={"file": wav.read_bytes()},
        timeout=300,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    assert "id:" not in body and "[DONE]" not in body
    assert all(block.startswith("data: {") for block in body.strip().split("\n\n"))


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_translation_formats(client, wav, fmt):
    result = client.audio.translations.create(model="whisper-1", file=wav.open("rb"), response_format=fmt)
    text = result if isinstance(result, str) else result.text
    assert "fox" in normalize(text)
    if fmt == "verbose_json":
        assert result.language == "english" and result.segments


def test_silent_audio_is_400(client, workdir):
    path = workdir / "silence.wav"
    sf.write(path, np.zeros(32000, np.float32), 16000)
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"))
    assert "silent" in err.value.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"response_format": "json", "timestamp_granularities": ["word"]}, "timestamp_granularities[]"),
        ({"extra_body": {"min_speakers": 2}}, "min_speakers"),
        ({"extra_body": {"diarize": "true", "min_speakers": 3, "max_speakers": 2}}, "min_speakers"),
        ({"response_format": "mp3"}, "response_format"),
        ({"response_format": "srt", "include": ["logprobs"]}, "include[]"),
        ({"include": ["logprobs"], "extra_body": {"advanced": "true"}}, "include[]"),
    ],
)
def test_invalid_combinations_are_400(client, wav, kwargs, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), **kwargs)
    assert err.value.param == param


def test_missing_alignment_model_is_503_naming_it(client, wav):
    with pytest.raises(openai.InternalServerError) as err:
        client.with_options(max_retries=0).audio.transcriptions.create(
            model="whisper-1",
            file=wav.open("rb"),
            language="fr",
            response_format="verbose_json",
            timestamp_granularities=["word"],
        )
    message = error_of(err.value)["message"]
    assert err.value.status_code == 503 and "alignment" in message and ":fr" in message


@pytest.fixture(scope="module")
def whisper_method_stack(workdir):
    """Word times from Whisper itself; no diarization model configured (the hub default is offline)."""
    from scripts.devstack import local_stack
    from tests.conftest import start, whisper_models

    services = local_stack(
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_WORD_TIMESTAMPS": "whisper"},
        tts_env={},
        gateway_env={},
    )
    start(services, workdir / "logs" / "whisper-words")
    yield openai.OpenAI(base_url=f"{services[-1].url}/v1", api_key="x", max_retries=0, timeout=300)
    for svc in reversed(services):
        svc.stop()


def test_whisper_word_timestamps_method(whisper_method_stack, wav):
    result = whisper_method_stack.audio.transcriptions.create(
        model="whisper-1",
        file=wav.open("rb"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    check_words(result.words, result.duration)
    assert "lazy" in [normalize(w.word) for w in result.words]
    for seg in result.segments:
        assert seg.tokens and 0 <= seg.no_speech_prob <= 1


def test_whisper_method_streams_segment_by_segment(whisper_method_stack, spoken):
    wav = list(spoken.values())[2]
    events = list(whisper_method_stack.audio.transcriptions.create(model="whisper-1", file=wav.open("rb"), stream=True))
    assert events[-1].type == "transcript.text.done" and "software" in normalize(events[-1].text)


def test_missing_diarization_model_is_503_naming_it(whisper_method_stack, dialog):
    with pytest.raises(openai.InternalServerError) as err:
        whisper_method_stack.audio.transcriptions.create(
            model="whisper-1", file=dialog.open("rb"), response_format="diarized_json"
        )
    assert err.value.status_code == 503
    assert "pyannote/speaker-diarization-community-1" in error_of(err.value)["message"]
