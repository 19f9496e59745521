import openai
import pytest

from tests.support.errors import error_of


def test_list_models_shows_public_ids_only(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["whisper-1", "turbo", "tts-1", "tts-1-hd", "coqui-tts"]
    assert not any("/" in i or "large" in i or "xtts" in i for i in ids)


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
