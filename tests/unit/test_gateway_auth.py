"""API keys on every /v1 route, in process."""

import pytest

from tests.unit.conftest import audio_file

ROUTES = [
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models/whisper-1", {}),
    ("POST", "/v1/audio/transcriptions", {"files": audio_file(), "data": {"model": "whisper-1"}}),
    ("POST", "/v1/audio/translations", {"files": audio_file(), "data": {"model": "whisper-1"}}),
    (
        "POST",
        "/v1/audio/speech",
        {"json": {"model": "tts-1", "voice": "alloy", "input": "hi", "response_format": "wav"}},
    ),
]
REFUSED = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "Basic sk-good",
    "sk-good",
    "Bearer sk-bad",
    "Bearer sk-good-but-longer",
    "Bearer sk-goo",
    "Token sk-good",
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
@pytest.mark.parametrize("authorization", REFUSED)
def test_refused(keyed, method, path, kwargs, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = keyed.client.request(method, path, headers=headers, **kwargs)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["x-request-id"]
    assert not keyed.asr.seen[1:] and not [s for s in keyed.tts.seen if s.path != "/models"]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTES)
@pytest.mark.parametrize("authorization", ["Bearer sk-good", "bearer sk-other", "BEARER  sk-good "])
def test_accepted(keyed, method, path, kwargs, authorization):
    r = keyed.client.request(method, path, headers={"Authorization": authorization}, **kwargs)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_open_paths_need_no_key(keyed, path):
    assert keyed.client.get(path).status_code == 200


def test_metrics_can_require_a_key(gateway_with):
    gw = gateway_with(api_keys=["sk-good"], metrics_need_key=True)
    assert gw.client.get("/metrics").status_code == 401
    assert gw.client.get("/metrics", headers={"Authorization": "Bearer sk-good"}).status_code == 200


def test_no_keys_configured_means_no_auth(gw):
    assert gw.client.get("/v1/models").status_code == 200
    assert gw.client.get("/v1/models", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_the_playground_is_open_and_can_be_turned_off(keyed, gateway_with):
    page = keyed.client.get("/playground")
    assert page.status_code == 200 and '<script src="/playground/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert keyed.client.get("/playground/style.css").status_code == 200
    off = gateway_with(playground=False)
    assert off.client.get("/playground").status_code == 404
