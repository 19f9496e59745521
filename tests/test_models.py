import openai
import pytest

from tests.support.errors import error_of


def test_list_models_shows_public_ids_only(client):
    ids = [m.id for m in client.models.list()]
    assert ids == [
        "whisper-1", "turbo", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe", "gpt-live-transcribe",
        "gpt-realtime-whisper", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "coqui-tts",
    ]  # fmt: skip
    assert not any("/" in i or "large" in i or "xtts" in i for i in ids)


def test_the_names_newer_clients_default_to_are_served(client, spoken):
    """gpt-4o-transcribe and friends are Whisper (ASR_MODEL_ALIASES), gpt-4o-mini-tts the speech model."""
    wav = next(iter(spoken.values()))
    for model in ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-realtime-whisper"):
        assert "dog" in client.audio.transcriptions.create(model=model, file=wav.open("rb")).text
    speech = client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="Hi.", response_format="wav")
    assert speech.content[:4] == b"RIFF"


def test_retrieve_model(client):
    model = client.models.retrieve("tts-1")
    assert model.id == "tts-1" and model.object == "model" and model.owned_by == "speech-stack"


def test_unknown_model_is_404_openai_shaped(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-nope")
    assert err.value.code == "model_not_found"
    assert error_of(err.value)["type"] == "invalid_request_error"


def test_docs_and_openapi(gateway_url):
    import httpx

    spec = httpx.get(f"{gateway_url}/openapi.json").json()
    routes = {"/v1/models", "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech"}
    assert routes <= set(spec["paths"])
    for page in ("/docs", "/redoc", "/healthz"):
        assert httpx.get(f"{gateway_url}{page}").status_code == 200
