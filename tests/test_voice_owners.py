"""Uploaded voices belong to someone, on the real stack (tiny XTTS, a key file, consent required, one
voice per owner): consent recordings made through the SDK's voice_consents routes and an upload that
must reference one of the uploader's own; a voice its owner (and the keys sharing that owner) can
use, list and delete and no other key can, nor a caller without a key; the voice limit per owner."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from scripts.devstack import local_stack
from tests.conftest import start
from tests.support.espeak import speak

KEYS = {"alice": "sk-owner-alice-01", "carol": "sk-owner-carol-02", "bob": "sk-owner-bob-03"}


@pytest.fixture(scope="module")
def owners(workdir, tiny):
    refs = workdir / "owner-refs"
    refs.mkdir()
    default_ref = speak("This is the default reference voice for the tests.", refs / "default.wav")
    keys = workdir / "owner-keys.json"
    entries = [{"name": "alice", "key": KEYS["alice"]}, {"name": "carol", "key": KEYS["carol"], "owner": "alice"},
               {"name": "bob", "key": KEYS["bob"]}]  # fmt: skip
    keys.write_text(json.dumps({"keys": entries}))
    _, tts, gw = local_stack(
        asr_env={},
        gateway_env={"GATEWAY_API_KEYS_FILE": str(keys)},
        tts_env={
            "TTS_MODEL": str(tiny["xtts"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_HOME": str(workdir / "owners-home"),
            "TTS_DEFAULT_SPEAKER_WAV": str(default_ref),
            "TTS_DEFAULT_SPEAKER_URL": "",
            "TTS_VOICE_STORE": str(workdir / "owner-store"),
            "TTS_REQUIRE_CONSENT": "true",
            "TTS_MAX_VOICES": "1",
        },
    )
    start([tts, gw], workdir / "logs" / "owners")
    yield gw.url
    for svc in (gw, tts):
        svc.stop()


@pytest.fixture(scope="module")
def recordings(workdir) -> dict[str, Path]:
    out = workdir / "owner-recordings"
    out.mkdir()
    return {
        "consent": speak("I agree to my voice being cloned for this test.", out / "consent.wav"),
        "sample": speak(
            "This recording is long enough to clone a voice from, with a few words in it.",
            out / "sample.wav",
            voice="en-gb",
        ),
    }


def sdk(url: str, who: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[who] if who else "none", max_retries=0, timeout=300)


def listed(url: str, who: str | None) -> set[str]:
    return {v["id"] for v in sdk(url, who).get("/audio/voices", cast_to=dict)["data"] if v["type"] == "audio_sample"}


def test_uploads_need_a_consent_record_of_the_uploaders_own(owners, recordings):
    alice, bob = sdk(owners, "alice"), sdk(owners, "bob")
    with recordings["consent"].open("rb") as f:
        consent = alice.audio.voice_consents.create(name="Alice agrees", language="en-US", recording=f)
    assert consent.id.startswith("cons_") and consent.object == "audio.voice_consent"
    for who, given, code in ((alice, "cons_000000000000000000000000", "consent_not_found"),
                             (bob, consent.id, "consent_not_found")):  # fmt: skip
        with recordings["sample"].open("rb") as f, pytest.raises(openai.BadRequestError) as refused:
            who.audio.voices.create(audio_sample=f, consent=given, name=f"refused {code}")
        assert refused.value.code == code
    assert [c.id for c in alice.audio.voice_consents.list()] == [consent.id]
    assert list(bob.audio.voice_consents.list()) == []
    with pytest.raises(openai.NotFoundError):
        bob.audio.voice_consents.retrieve(consent.id)
    assert alice.audio.voice_consents.update(consent.id, name="Alice, renamed").name == "Alice, renamed"


def test_a_voice_is_its_owners_alone(owners, recordings):
    alice, carol, bob = (sdk(owners, k) for k in ("alice", "carol", "bob"))
    (consent,) = list(alice.audio.voice_consents.list())
    with recordings["sample"].open("rb") as f:
        voice = alice.audio.voices.create(audio_sample=f, consent=consent.id, name="Alice voice")
    for who in (alice, carol):  # carol's key shares alice's owner
        assert who.audio.speech.create(model="tts-1", voice=voice.id, input="Hello.", response_format="wav").content
    with pytest.raises(openai.BadRequestError) as refused:
        bob.audio.speech.create(model="tts-1", voice=voice.id, input="Hello.", response_format="wav")
    assert refused.value.code == "voice_not_found"
    assert voice.id in listed(owners, "alice") and voice.id in listed(owners, "carol")
    assert voice.id not in listed(owners, "bob") and voice.id not in listed(owners, None)
    with pytest.raises(openai.NotFoundError):
        bob.audio.voices.delete(voice.id)
    # the limit is per owner: alice's second voice is refused, bob's first is not
    with recordings["sample"].open("rb") as f, pytest.raises(openai.ConflictError) as full:
        alice.audio.voices.create(audio_sample=f, consent=consent.id, name="Alice second")
    assert full.value.code == "voice_limit_reached"
    with recordings["consent"].open("rb") as f:
        bobs = bob.audio.voice_consents.create(name="Bob agrees", language="en-US", recording=f)
    with recordings["sample"].open("rb") as f:
        assert bob.audio.voices.create(audio_sample=f, consent=bobs.id, name="Bob voice").id
    assert carol.audio.voices.delete(voice.id).deleted
    assert alice.audio.voice_consents.delete(consent.id).deleted
    assert list(alice.audio.voice_consents.list()) == []
