"""The voice API on the real stack with a tiny XTTS: upload through the official SDK, list, speak
with the voice by id, by ``{"id": ...}`` and by name, survive a TTS predictor restart, delete; every
bad upload a clean 4xx with nothing left on disk; a model that cannot clone says so."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from scripts.devstack import Service, base_env, free_port, local_stack
from tests.conftest import start
from tests.support.espeak import decode, speak, transcode

SAMPLE_TEXT = "This recording is long enough to clone a voice from, and it has quite a few words in it."


@pytest.fixture(scope="module")
def samples(workdir) -> dict[str, Path]:
    out = workdir / "voice-samples"
    out.mkdir()
    good = speak(SAMPLE_TEXT, out / "good.wav", voice="en-gb")
    speech, rate = sf.read(good, dtype="float32")
    (out / "good.ogg").write_bytes(transcode(good, "ogg", "libopus", 48000))  # a browser-like recording
    speak("Too short.", out / "short.wav")
    sf.write(out / "silent.wav", np.zeros(rate * 6, np.float32), rate)
    sf.write(out / "long.wav", np.concatenate([speech] * 10), rate)  # ~50 s of speech
    sf.write(
        out / "padded.wav",
        np.concatenate([np.zeros(rate * 20, np.float32), speech, np.zeros(rate * 20, np.float32)]),
        rate,
    )
    (out / "not-audio.wav").write_bytes(b"this is a text file, not a recording\n" * 200)
    return {p.stem: p for p in out.iterdir()}


@pytest.fixture(scope="module")
def voices(workdir, tiny):
    refs = workdir / "voice-refs"
    refs.mkdir()
    default_ref = speak("This is the default reference voice for the tests.", refs / "default.wav")
    operator_ref = speak("An operator's own recording.", refs / "studio.wav", voice="en-us+f2")
    store = workdir / "voice-store"
    services = local_stack(
        asr_env={},
        gateway_env={},
        tts_env={
            "TTS_MODEL": str(tiny["xtts"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(workdir / "voices-home"),
            "TTS_DEFAULT_SPEAKER_WAV": str(default_ref),
            "TTS_DEFAULT_SPEAKER_URL": "",
            "TTS_VOICES": json.dumps({"studio": str(operator_ref)}),
            "TTS_VOICE_STORE": str(store),
            "TTS_STREAM_CHUNK_SIZE": "5",
        },
    )
    start(services, workdir / "logs" / "voices")
    yield services, store
    for svc in reversed(services):
        svc.stop()


def sdk(services) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{services[-1].url}/v1", api_key="x", max_retries=0, timeout=300)


def upload(services, name: str, sample: Path | bytes, **fields) -> httpx.Response:
    """The multipart request the SDK sends, raw, so refusals can be inspected."""
    data = sample.read_bytes() if isinstance(sample, Path) else sample
    return httpx.post(
        f"{services[-1].url}/v1/audio/voices",
        timeout=300,
        data={"name": name, "consent": "cons_test", **fields},
        files={"audio_sample": ("sample.wav", data, "audio/wav")},
    )


def listed(services) -> dict[str, dict]:
    doc = httpx.get(f"{services[-1].url}/v1/audio/voices", timeout=300).json()
    assert doc["object"] == "list" and doc["data"] == doc["voices"]
    return {v["id"]: v for v in doc["data"]}


def say(services, voice, fmt: Any = "wav", **kw: Any) -> bytes:
    return (
        sdk(services)
        .audio.speech.create(model="tts-1", voice=voice, input="Hello there.", response_format=fmt, **kw)
        .content
    )


def probe(data: bytes, tmp_path: Path, fmt: str) -> dict:
    path = tmp_path / f"probe.{fmt}"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr == ""
    return json.loads(out.stdout)["streams"][0]


def leftovers(store: Path) -> list[str]:
    """Anything in the store besides committed voices and their name claims."""
    voices = {p.name for p in store.glob("voice_*")}
    claims = list((store / ".names").iterdir()) if (store / ".names").exists() else []
    extra = [p.name for p in store.iterdir() if p.name not in voices and p.name != ".names"]
    assert len(claims) == len(voices), (claims, voices)
    return extra


def test_upload_list_speak_restart_delete(voices, samples, tmp_path):
    services, store = voices
    client = sdk(services)
    with samples["good"].with_suffix(".ogg").open("rb") as f:
        voice = client.audio.voices.create(name="Test Voice", audio_sample=f, consent="cons_1234")
    assert voice.id.startswith("voice_") and voice.object == "audio.voice" and voice.type == "audio_sample"
    assert voice.name == "Test Voice" and voice.created_at > 0

    entries = listed(services)
    assert entries[voice.id]["name"] == "Test Voice" and entries[voice.id]["type"] == "audio_sample"
    assert {entries["Ana Random"]["type"], entries["studio"]["type"]} == {"builtin", "operator"}
    assert entries["alloy"] == {
        "id": "alloy",
        "name": "alloy",
        "object": "audio.voice",
        "type": "alias",
        "created_at": None,
        "language": None,
        "maps_to": "default reference",
    }

    meta = json.loads((store / voice.id / "meta.json").read_text())
    assert 3 < meta["seconds"] < 10 and meta["consent"] == "cons_1234"
    latents = list((store / voice.id).glob("latents-*.pth"))
    assert len(latents) == 1  # computed once, at upload
    stamp = latents[0].stat().st_mtime_ns

    by_id = say(services, voice.id)
    by_object = say(services, {"id": voice.id})
    by_name = say(services, "Test Voice", fmt="mp3")
    assert probe(by_id, tmp_path, "wav")["sample_rate"] == "24000"
    assert probe(by_object, tmp_path, "wav")["codec_name"] == "pcm_s16le"
    assert probe(by_name, tmp_path, "mp3")["codec_name"] == "mp3"
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice={"id": voice.id}, input="Streamed. In pieces.", response_format="pcm"
    ) as r:
        assert sum(len(c) for c in r.iter_bytes()) > 0
    assert latents[0].stat().st_mtime_ns == stamp  # used, never recomputed

    tts = services[1]
    tts.stop()
    tts.start(tts.log_path.parent)
    tts.wait_healthy()
    assert voice.id in listed(services)
    samples_after, rate = decode(say(services, voice.id))
    assert rate == 24000 and samples_after.size > 0

    deleted = client.audio.voices.delete(voice.id)
    assert deleted.id == voice.id and deleted.deleted and deleted.object == "audio.voice.deleted"
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete(voice.id)
    for kwargs in ({}, {"extra_body": {"stream": True}}):  # type: dict[str, Any]
        with pytest.raises(openai.BadRequestError) as err:
            say(services, voice.id, **kwargs)
        assert err.value.code == "voice_not_found" and err.value.param == "voice"
    assert voice.id not in listed(services)
    assert leftovers(store) == [] and not (store / voice.id).exists()


BAD_UPLOADS = [  # (case, name, sample: a key of `samples` or bytes, extra fields, status, code)
    ("not audio", "Bad One", "not-audio", {}, 400, "invalid_audio"),
    ("silent", "Bad One", "silent", {}, 400, "sample_silent"),
    ("too short", "Bad One", "short", {}, 400, "sample_too_short"),
    ("too long", "Bad One", "long", {}, 400, "sample_too_long"),
    ("empty", "Bad One", b"", {}, 400, "empty_file"),
    ("too big", "Bad One", b"\0" * (10 * 1024 * 1024 + 1), {}, 413, "file_too_large"),
    ("path in name", "../../etc/passwd", "good", {}, 400, "invalid_voice_name"),
    ("slash in name", "a/b", "good", {}, 400, "invalid_voice_name"),
    ("name too long", "x" * 65, "good", {}, 400, "invalid_voice_name"),
    ("non-ASCII name", "名前", "good", {}, 400, "invalid_voice_name"),
    ("id-like name", "voice_0123", "good", {}, 400, "invalid_voice_name"),
    ("leading space", " spaced", "good", {}, 400, "invalid_voice_name"),
    ("built-in name", "Ana Random", "good", {}, 409, "voice_name_taken"),
    ("operator name", "Studio", "good", {}, 409, "voice_name_taken"),
    ("unknown language", "Bad One", "good", {"language": "xx"}, 400, "unsupported_language"),
    ("prompt voice", "Bad One", "good", {"type": "prompt", "prompt": "a calm voice"}, 400, "unsupported_value"),
]


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_upload_is_a_clean_4xx_leaving_nothing(voices, samples, case):
    services, store = voices
    _, name, sample, fields, status, code = case
    response = upload(services, name, samples[sample] if isinstance(sample, str) else sample, **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert str(store) not in error["message"]
    assert leftovers(store) == []
    assert not any(v["type"] == "audio_sample" for v in listed(services).values())


def test_padded_sample_is_trimmed_to_its_speech(voices, samples):
    services, store = voices
    response = upload(services, "Padded", samples["padded"])
    assert response.status_code == 200, response.text
    voice_id = response.json()["id"]
    assert json.loads((store / voice_id / "meta.json").read_text())["seconds"] < 10
    assert httpx.delete(f"{services[-1].url}/v1/audio/voices/{voice_id}").status_code == 200


def test_duplicate_and_concurrent_names(voices, samples):
    services, store = voices
    first = upload(services, "Twin", samples["good"])
    assert first.status_code == 200
    again = upload(services, "twin", samples["good"])  # names are unique regardless of case
    assert again.status_code == 409 and again.json()["error"]["code"] == "voice_name_taken"

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(upload(services, "Racer", samples["good"]).status_code))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409, 409, 409]
    assert leftovers(store) == []
    for voice in listed(services).values():
        if voice["type"] == "audio_sample":
            assert httpx.delete(f"{services[-1].url}/v1/audio/voices/{voice['id']}").status_code == 200
    assert leftovers(store) == [] and not list(store.glob("voice_*"))


def test_server_voices_cannot_be_deleted_and_unknown_ids_are_404(voices):
    services, _ = voices
    base = f"{services[-1].url}/v1/audio/voices"
    for voice in ("Ana Random", "studio", "alloy"):
        response = httpx.delete(f"{base}/{voice}")
        assert response.status_code == 403 and response.json()["error"]["code"] == "voice_not_deletable"
    response = httpx.delete(f"{base}/voice_00000000000000000000dead")
    assert response.status_code == 404 and response.json()["error"]["code"] == "voice_not_found"
    assert httpx.delete(f"{base}/nobody").status_code == 404


def test_unknown_voice_id_is_400_but_unknown_names_fall_back(voices):
    services, _ = voices
    with pytest.raises(openai.BadRequestError) as err:
        say(services, "voice_00000000000000000000dead")
    assert err.value.code == "voice_not_found"
    with pytest.raises(openai.BadRequestError):
        say(services, {"id": "voice_nope"})
    assert decode(say(services, "someone-unknown"))[0].size > 0  # the seed's fallback stays


def test_vits_cannot_clone_but_lists_its_speakers(client, gateway_url, samples):
    response = httpx.post(
        f"{gateway_url}/v1/audio/voices",
        data={"name": "Nope"},
        files={"audio_sample": ("s.wav", samples["good"].read_bytes(), "audio/wav")},
        timeout=300,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "voice_cloning_unsupported"
    entries = {v["id"]: v for v in httpx.get(f"{gateway_url}/v1/audio/voices").json()["voices"]}
    builtin = [v for v in entries.values() if v["type"] == "builtin"]
    assert len(builtin) >= 2 and entries["nova"]["maps_to"] == builtin[0]["id"]  # the seed's fallback
    assert entries["alloy"]["type"] == "builtin"  # the tiny VITS has a speaker of that name
    assert not [v for v in entries.values() if v["type"] in ("operator", "audio_sample")]


# -- the exact requests of Open WebUI and SillyTavern (shared/reference/clients.md) ------------------
KEY = "sk-replay"


@pytest.fixture(scope="module")
def keyed_gateways(voices, workdir):
    """Two more gateways on the same predictors with an API key: lists open (the default) or closed."""
    services, _ = voices
    gateways = {}
    for lists_need_key in (False, True):
        gw = Service(f"gateway-keys-{lists_need_key}", "services.gateway", free_port())
        gw.env = base_env(1, True) | {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(gw.port),
            "GATEWAY_ASR_URL": services[0].url,
            "GATEWAY_TTS_URL": services[1].url,
            "GATEWAY_API_KEYS": json.dumps([KEY]),
            "GATEWAY_VOICES_NEED_KEY": str(lists_need_key).lower(),
        }
        gateways[lists_need_key] = gw
    start(list(gateways.values()), workdir / "logs" / "keyed")
    yield {k: g.url for k, g in gateways.items()}
    for gw in gateways.values():
        gw.stop()


def open_webui_lists(base: str) -> tuple[dict[str, str], list[str]]:
    """routers/audio.py: both lists fetched with no Authorization header; voices as {id: name}."""
    voices = httpx.get(f"{base}/audio/voices")
    models = httpx.get(f"{base}/audio/models")
    voices.raise_for_status()
    models.raise_for_status()
    return (
        {v["id"]: v["name"] for v in voices.json().get("voices", [])},
        [m["id"] for m in models.json().get("models", [])],
    )


def open_webui_speech(base: str, key: str, voice: str) -> httpx.Response:
    """The backend's POST with `requests`: model overwritten with TTS_MODEL, no response_format (mp3),
    JSON, `Bearer {key}` even when the key is empty (sent through http.client, which allows the
    trailing space that httpx refuses)."""
    body = json.dumps({"input": "Hello from Open WebUI.", "voice": voice, "model": "tts-1"}).encode()
    url = httpx.URL(f"{base}/audio/speech")
    conn = http.client.HTTPConnection(url.host, url.port, timeout=300)
    try:
        conn.request(
            "POST",
            url.raw_path.decode(),
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        answer = conn.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        conn.close()


def sillytavern_speech(url: str, key: str | None) -> httpx.Response:
    """tts/openai-compatible.js through ST's server: the full speech URL, `Bearer ${key ?? ''}`; fetch
    trims header values, so with no key the wire says `Authorization: Bearer`."""
    body = {
        "input": "Hello from SillyTavern.",
        "response_format": "mp3",
        "voice": "alloy",
        "speed": 1,
        "model": "tts-1",
    }
    return httpx.post(
        url,
        content=json.dumps(body),
        timeout=300,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key or ''}".strip()},
    )


def test_open_webui_lists_and_speaks_with_keys_off_and_on(voices, keyed_gateways, samples, tmp_path):
    services, _ = voices
    created = upload(services, "Open WebUI Voice", samples["good"]).json()["id"]
    try:
        for base, key in ((f"{services[-1].url}/v1", ""), (f"{keyed_gateways[False]}/v1", KEY)):
            names, models = open_webui_lists(base)
            assert names[created] == "Open WebUI Voice" and names["Ana Random"] == "Ana Random"
            assert "alloy" in names and "tts-1" in models and "tts-1-hd" in models
            response = open_webui_speech(base, key, created)
            assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
            assert probe(response.content, tmp_path, "mp3")["codec_name"] == "mp3"
        wrong = open_webui_speech(f"{keyed_gateways[False]}/v1", "sk-wrong", created)
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        closed = f"{keyed_gateways[True]}/v1"  # GATEWAY_VOICES_NEED_KEY: Open WebUI falls back to its list
        assert httpx.get(f"{closed}/audio/voices").status_code == 401
        assert httpx.get(f"{closed}/audio/models").status_code == 401
        assert httpx.get(f"{closed}/audio/voices", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    finally:
        httpx.delete(f"{services[-1].url}/v1/audio/voices/{created}")


def test_sillytavern_with_and_without_a_key(voices, keyed_gateways, tmp_path):
    services, _ = voices
    response = sillytavern_speech(f"{services[-1].url}/v1/audio/speech", None)  # keys off: the empty one is ignored
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert probe(response.content, tmp_path, "mp3")["channels"] == 1
    keyed = f"{keyed_gateways[False]}/v1/audio/speech"
    refused = sillytavern_speech(keyed, None)  # no key configured in ST: "Bearer" with nothing after it
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert sillytavern_speech(keyed, KEY).status_code == 200
