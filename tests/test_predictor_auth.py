"""A predictor that requires the shared token: the gateway that has it is served, a direct caller or
a gateway without it is refused; health, readiness and metrics stay open."""

import httpx
import pytest

from scripts.devstack import local_stack
from tests.conftest import start
from tests.support.espeak import decode


@pytest.fixture(scope="module")
def guarded(workdir, tiny):
    services = local_stack(
        asr_env={},
        gateway_env={"GATEWAY_TTS_TOKEN": "s3cret-token"},
        tts_env={
            "TTS_MODEL": str(tiny["vits"]),
            "TTS_AUTH_TOKEN": "s3cret-token",
            "TTS_HOME": str(workdir / "auth-home"),
        },
    )
    _, tts, gw = services
    start([tts, gw], workdir / "logs" / "predictor-auth")
    yield tts, gw
    for svc in (gw, tts):
        svc.stop()


def test_the_gateway_with_the_token_is_served(guarded):
    _, gw = guarded
    r = httpx.post(
        f"{gw.url}/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Hello.", "response_format": "wav"},
        timeout=120,
    )
    assert r.status_code == 200 and decode(r.content)[0].size > 0


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer", "Basic s3cret-token"])
def test_callers_without_the_token_are_refused(guarded, authorization):
    tts, _ = guarded
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/v2/models/tts/infer", "/v2/models/tts/infer_stream"):
        r = httpx.post(f"{tts.url}{path}", content=b"{}", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert httpx.get(f"{tts.url}/models", headers=headers).status_code == 401
    for path in ("/healthz", "/readyz", "/metrics", "/v2/health/ready"):
        assert httpx.get(f"{tts.url}{path}").status_code == 200


def test_a_gateway_without_the_token_gets_a_502_that_says_so(guarded, workdir):
    from tests.test_faults import gateway

    tts, _ = guarded
    svc = gateway(workdir, "no-token", GATEWAY_TTS_URL=tts.url)
    try:
        r = httpx.post(
            f"{svc.url}/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi."}, timeout=60
        )
        assert r.status_code == 502 and r.headers["x-should-retry"] == "false"
        assert "token" in r.json()["error"]["message"]
    finally:
        svc.stop()
