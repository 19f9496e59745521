"""The voice library's edges in process: the store's all-or-nothing writes and name claims, the
sample checks, and the gateway's routes, auth and error passing against a fake TTS predictor."""

from __future__ import annotations

import json
import os
import time

import httpx
import numpy as np
import pytest

from services.common.errors import BadRequest, Conflict, NotFound
from services.tts import samples
from services.tts.voice_store import VoiceStore, check_name
from tests.unit.conftest import KEYS
from tests.unit.fake_predictor import error


def tone(seconds: float, rate: int = samples.RATE, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def wav_bytes(signal: np.ndarray, rate: int = samples.RATE) -> bytes:
    import io

    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, signal, rate, format="WAV")
    return out.getvalue()


# -- the store -------------------------------------------------------------------------------------
def make(store: VoiceStore, name: str) -> str:
    with store.creating(name, 4.0, "en", None, None) as draft:
        draft.sample.write_bytes(b"RIFF")
    return draft.voice.id


def test_a_voice_appears_whole_and_disappears_whole(tmp_path):
    store = VoiceStore(tmp_path, max_voices=5)
    voice_id = make(store, "Alice")
    stored, named = store.get(voice_id), store.named("ALICE")
    assert [v.name for v in store.all()] == ["Alice"] and stored is not None and stored.language == "en"
    assert named is not None and named.id == voice_id  # names are unique regardless of case
    assert sorted(p.name for p in (tmp_path / voice_id).iterdir()) == ["meta.json", "sample.wav"]
    store.delete(voice_id)
    assert store.all() == [] and not list((tmp_path / ".names").iterdir())
    assert [p.name for p in tmp_path.iterdir()] == [".names"]
    with pytest.raises(NotFound):
        store.delete(voice_id)


def test_a_failed_write_leaves_nothing_and_frees_the_name(tmp_path):
    store = VoiceStore(tmp_path, max_voices=5)

    def fail() -> None:
        with store.creating("Bob", 4.0, None, None, None) as draft:
            draft.sample.write_bytes(b"partial")
            raise RuntimeError("latents failed")

    with pytest.raises(RuntimeError):
        fail()
    assert [p.name for p in tmp_path.iterdir()] == [".names"] and not list((tmp_path / ".names").iterdir())
    make(store, "Bob")


def test_names_are_claimed_once_and_the_limit_holds(tmp_path):
    store = VoiceStore(tmp_path, max_voices=2)
    make(store, "one")
    with pytest.raises(Conflict) as err:
        make(store, "One")
    assert err.value.code == "voice_name_taken"
    make(store, "two")
    with pytest.raises(Conflict) as err:
        make(store, "three")
    assert err.value.code == "voice_limit_reached"
    assert len(list((tmp_path / ".names").iterdir())) == 2  # the refused claim was given back


def test_leftovers_of_a_crash_are_cleared_once_stale(tmp_path):
    store = VoiceStore(tmp_path, max_voices=5, stale_seconds=60)
    (tmp_path / ".names").mkdir()
    old, fresh = tmp_path / ".tmp-voice_old", tmp_path / ".tmp-voice_new"
    old.mkdir()
    fresh.mkdir()  # another replica's upload in progress
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    claim = store._claim_path("Crashed")
    claim.mkdir()
    os.utime(claim, (time.time() - 3600, time.time() - 3600))
    make(store, "Crashed")  # the dead upload's name is taken over
    assert not old.exists() and fresh.exists()


@pytest.mark.parametrize(
    "voice_id",
    ["../etc", "voice_../../x", "voice_0123", "VOICE_0123456789abcdef01234567", "voice_0123456789abcdef0123456/"],
)
def test_ids_never_become_paths(tmp_path, voice_id):
    store = VoiceStore(tmp_path, max_voices=5)
    assert store.get(voice_id) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        " x",
        "x ",
        "../x",
        "a/b",
        "a\\b",
        "x" * 65,
        "名前",
        "voice_1",
        "Voice_x",
        ".hidden",
        "-dash",
        "tab\there",
        "new\nline",
    ],
)
def test_bad_names(name):
    with pytest.raises(BadRequest):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "Alice", "my voice 2", "x" * 64, "v1.0-final_take", "voices"])
def test_good_names(name):
    assert check_name(name) == name


# -- samples ---------------------------------------------------------------------------------------
def test_sample_speech_is_trimmed_and_measured():
    padded = np.concatenate([np.zeros(samples.RATE * 10, np.float32), tone(5), np.zeros(samples.RATE * 10, np.float32)])
    speech = samples.prepare(wav_bytes(padded), 3, 30)
    assert 5.0 <= speech.size / samples.RATE <= 5.3


@pytest.mark.parametrize(
    ("signal", "code"),
    [
        (np.zeros(samples.RATE * 5, np.float32), "sample_silent"),
        (tone(5, level=0.001), "sample_silent"),  # -63 dBFS: room noise, not speech
        (tone(1.5), "sample_too_short"),
        (tone(31), "sample_too_long"),
        (np.concatenate([tone(5), np.zeros(samples.RATE * 70, np.float32)]), "sample_too_long"),
    ],
)
def test_bad_samples(signal, code):
    with pytest.raises(BadRequest) as err:
        samples.prepare(wav_bytes(signal), 3, 30)
    assert err.value.code == code and err.value.param == "audio_sample"


def test_samples_at_other_rates_are_resampled():
    speech = samples.prepare(wav_bytes(tone(4, rate=8000), 8000), 3, 30)
    assert 4.0 <= speech.size / samples.RATE <= 4.3


# -- the gateway -----------------------------------------------------------------------------------
def test_list_has_both_shapes(gw):
    doc = gw.client.get("/v1/audio/voices").json()
    assert doc["object"] == "list" and doc["data"] == doc["voices"]
    assert {v["id"]: v["type"] for v in doc["voices"]} == {"Ana": "builtin", "alloy": "alias"}
    assert all(v["object"] == "audio.voice" for v in doc["data"])
    models = gw.client.get("/v1/audio/models").json()
    assert [m["id"] for m in models["models"]] == ["tts-1", "tts-1-hd"] and models["data"] == models["models"]


def test_lists_are_open_by_default_but_uploads_are_not(keyed):
    assert keyed.client.get("/v1/audio/voices").status_code == 200
    assert keyed.client.get("/v1/audio/models").status_code == 200
    upload = keyed.client.post(
        "/v1/audio/voices", data={"name": "x"}, files={"audio_sample": ("a.wav", b"RIFF", "audio/wav")}
    )
    assert upload.status_code == 401
    assert keyed.client.delete("/v1/audio/voices/voice_x").status_code == 401


def test_lists_can_need_a_key(gateway_with):
    gw = gateway_with(api_keys=KEYS, voices_need_key=True)
    for path in ("/v1/audio/voices", "/v1/audio/models"):
        assert gw.client.get(path).status_code == 401
        assert gw.client.get(path, headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 200


def test_upload_is_forwarded_whole_as_v2(gw):
    sample = bytes(range(256)) * 100
    r = gw.client.post(
        "/v1/audio/voices",
        data={"name": "Carol", "consent": "cons_1", "language": "de"},
        files={"audio_sample": ("c.webm", sample, "audio/webm")},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "voice_0123456789abcdef01234567",
        "created_at": 1700000000,
        "name": "Carol",
        "object": "audio.voice",
        "type": "audio_sample",
    }
    (seen,) = [s for s in gw.tts.seen if s.path == "/voices"]
    assert seen.request.parameters.items() >= {"name": "Carol", "consent": "cons_1", "language": "de"}.items()
    assert bytes(seen.request.tensor("audio_sample").elements()[0]) == sample


@pytest.mark.parametrize(
    ("data", "files", "param"),
    [
        ({"name": "x", "type": "prompt", "prompt": "calm"}, {"audio_sample": ("a.wav", b"RIFF", "audio/wav")}, "type"),
        ({"name": "x"}, {}, "audio_sample"),
        ({}, {"audio_sample": ("a.wav", b"RIFF", "audio/wav")}, "name"),
        ({"name": "x"}, {"audio_sample": ("a.wav", b"", "audio/wav")}, "audio_sample"),
    ],
)
def test_incomplete_uploads_never_reach_the_predictor(gw, data, files, param):
    r = gw.client.post("/v1/audio/voices", data=data, files=files or None)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert not [s for s in gw.tts.seen if s.path.startswith("/voices")]


@pytest.mark.parametrize("status", [403, 404, 409, 413])
def test_the_predictors_refusals_pass_through(gw, status):
    gw.tts.answer = error(status, "TTS says no", param="name", code="some_code")
    r = gw.client.delete("/v1/audio/voices/voice_0123")
    assert r.status_code == status
    assert r.json()["error"] == {
        "message": "TTS says no",
        "type": "invalid_request_error",
        "param": "name",
        "code": "some_code",
    }


def test_a_kserve_404_is_a_backend_failure(gw):
    gw.tts.answer = lambda _: httpx.Response(404, json={"error": "Model with name tts does not exist."})
    r = gw.client.get("/v1/audio/voices")
    assert r.status_code == 502 and "does not exist" not in r.json()["error"]["message"]


def test_malformed_voice_list_is_a_502(gw):
    gw.tts.answer = lambda _: httpx.Response(200, content=json.dumps({"data": [{"id": 1}]}))
    assert gw.client.get("/v1/audio/voices").status_code == 502


# -- names the server answers to, and the order of an upload's checks ---------------------------------
def tts_engine(tmp_path, model_config: dict, **settings):
    from services.common.predictor_metrics import PredictorMetrics
    from services.tts.engine import TtsEngine
    from services.tts.settings import TtsSettings

    model_dir = tmp_path / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps(model_config))
    conf = TtsSettings(model=str(model_dir), voice_store=tmp_path / "store", voice_dir=tmp_path / "voices", **settings)
    engine = TtsEngine(conf, PredictorMetrics("tts"))
    loads = []

    def loader():
        loads.append(1)
        raise AssertionError("the model was loaded")

    engine.coqui._loader = loader
    return engine, loads


def upload(name: str, signal: np.ndarray):
    from services.tts.voice_library import VoiceUpload

    return VoiceUpload(name, memoryview(wav_bytes(signal)), None, None)


@pytest.mark.parametrize("name", ["alloy", "Alloy", "NOVA", "verse", "Narrator"])
def test_an_upload_cannot_take_a_name_the_server_answers_to(tmp_path, name):
    """Security: a voice named alloy would otherwise be spoken for every client's voice="alloy"."""
    engine, _ = tts_engine(tmp_path, {"model": "xtts", "languages": ["en"]}, voices={"narrator": "/x.wav"})
    with pytest.raises(Conflict) as err:
        engine.voices.check_new(upload(name, tone(4)), ["en"])
    assert err.value.code == "voice_name_taken"


def test_a_stored_voice_never_shadows_an_openai_name(tmp_path):
    """A voice stored under one of OpenAI's names (before this rule, or by hand) is usable by its id only."""
    engine, _ = tts_engine(tmp_path, {"model": "xtts", "languages": ["en"]})
    voice_id = make(engine.voices.store, "Alloy")
    assert engine.voices.clone_for("alloy") is None and engine.voices.clone_for("ALLOY") is None
    assert engine.voices.clone_for(voice_id).id == voice_id


def test_a_bad_sample_or_a_model_that_cannot_clone_never_loads_the_model(tmp_path):
    engine, loads = tts_engine(tmp_path, {"model": "xtts", "languages": ["en"]})
    with pytest.raises(BadRequest) as err:
        engine.create_voice(upload("Narrator", tone(1.0)))
    assert err.value.code == "sample_too_short" and not loads
    vits, loads = tts_engine(tmp_path / "vits", {"model": "vits"})
    with pytest.raises(BadRequest) as err:
        vits.create_voice(upload("Narrator", tone(5)))
    assert err.value.code == "voice_cloning_unsupported" and not loads


def test_a_duplicate_upload_is_refused_while_synthesis_holds_the_model(tmp_path):
    """The 409 is decided without the model's lock: a bad or duplicate upload never waits for (or
    holds up) synthesis."""
    import threading

    from services.tts.engine import ModelFacts

    engine, loads = tts_engine(tmp_path, {"model": "xtts", "languages": ["en"]})
    engine.facts = ModelFacts(True, ["en"], None, loaded=True)
    make(engine.voices.store, "Narrator")
    outcome = []
    with engine.coqui.work_lock:  # a long synthesis is running
        worker = threading.Thread(
            target=lambda: outcome.append(_raised(engine.create_voice, upload("narrator", tone(5))))
        )
        worker.start()
        worker.join(30)
    assert outcome and isinstance(outcome[0], Conflict) and outcome[0].code == "voice_name_taken" and not loads


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        return exc
    return None


def test_the_store_scan_is_kept_until_the_directory_changes(tmp_path):
    store = VoiceStore(tmp_path, 20)
    first = make(store, "One")
    past = time.time() - 10  # settled: older than the clock's tick
    os.utime(tmp_path, (past, past))
    assert [v.id for v in store.all()] == [first]
    (tmp_path / first / "meta.json").write_text("{}")  # a scan now would drop it: the cache is used instead
    assert [v.id for v in store.all()] == [first]
    second = make(store, "Two")  # a voice appears by a rename: the directory changed
    assert {v.id for v in store.all()} == {second}  # rescanned (the damaged first one is skipped now)


@pytest.mark.parametrize("voice_id", ["..", "."])
def test_delete_of_dot_segments_is_a_404_not_another_route(gw, voice_id):
    """``DELETE /v1/audio/voices/%2e%2e`` reaches the route as ``..`` (clients send it unnormalised);
    forwarded, the predictor's URL would lose a segment (it answered 405, which became a 502)."""
    import asyncio

    from services.gateway.voices import delete_voice

    with pytest.raises(NotFound) as err:
        asyncio.run(delete_voice(gw.client.app.state.tts, voice_id))
    assert err.value.code == "voice_not_found" and not gw.tts.seen
