"""Backend failures and auth over real sockets, seen through the official client: a gateway process
in front of a fault-injecting predictor stand-in, or of nothing at all."""

import json

import httpx
import openai
import pytest

from scripts.devstack import Service, base_env, free_port
from tests.conftest import start
from tests.support.errors import error_of
from tests.support.fake_backend import FaultyBackend


def gateway(workdir, name: str, **env) -> Service:
    svc = Service("gateway", "services.gateway", free_port())
    svc.env = base_env(1, True) | {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(svc.port)} | env
    start([svc], workdir / "logs" / name)
    return svc


def client_for(svc: Service, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{svc.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def dead_backends_gateway(workdir):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    svc = gateway(workdir, "dead", GATEWAY_ASR_URL=closed, GATEWAY_TTS_URL=closed)
    yield svc
    svc.stop()


def test_stopped_tts_backend_is_502_naming_it(dead_backends_gateway):
    with pytest.raises(openai.InternalServerError) as err:
        client_for(dead_backends_gateway).audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert err.value.status_code == 502
    assert error_of(err.value)["message"] == "TTS backend request failed: could not connect"


def test_stopped_asr_backend_is_502_naming_it(dead_backends_gateway, spoken):
    wav = next(iter(spoken.values()))
    with pytest.raises(openai.InternalServerError) as err:
        client_for(dead_backends_gateway).audio.transcriptions.create(model="whisper-1", file=wav.open("rb"))
    assert err.value.status_code == 502 and error_of(err.value)["message"].startswith("ASR backend request failed")


def test_model_list_leaves_out_unreachable_backends(dead_backends_gateway):
    assert list(client_for(dead_backends_gateway).models.list()) == []


@pytest.fixture(scope="module")
def faulty(workdir):
    port = free_port()
    with FaultyBackend(port) as fake:
        svc = gateway(workdir, "faulty", GATEWAY_TTS_URL=f"http://127.0.0.1:{port}", GATEWAY_READ_TIMEOUT="1")
        yield fake, svc
        svc.stop()


def speech(svc, fmt="wav"):
    return client_for(svc).audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="hi", response_format=fmt
    )


def test_a_predictor_slower_than_the_read_timeout_is_a_504(faulty):
    """The status mapping itself is the fast layer's (tests/unit/test_gateway_backend_errors.py); over
    real sockets only what needs them: a real clock, real connections."""
    fake, svc = faulty
    fake.mode = "slow"
    with pytest.raises(openai.APIStatusError) as err:
        speech(svc)
    assert err.value.status_code == 504 and error_of(err.value)["message"] == "TTS backend timed out after 1 s"
    assert err.value.response.headers["x-should-retry"] == "false" and err.value.response.headers["x-request-id"]


def test_stream_cut_by_the_backend(faulty):
    fake, svc = faulty
    fake.mode = "cut"
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "stream_format": "sse"}
    with httpx.stream("POST", f"{svc.url}/v1/audio/speech", json=body, timeout=30) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert '"type":"speech.audio.delta"' in events[0] and '"type":"error"' in events[-1]
    audio = body | {"stream_format": "audio"}
    # a cut audio stream is a broken response, never a short file
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream("POST", f"{svc.url}/v1/audio/speech", json=audio, timeout=30) as r,
    ):
        r.read()


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_a_crash_never_breaks_the_next_request(faulty, fmt):
    """The stand-in crashes on every other request as a predictor does (an OpenAI-shaped 500 from
    ``RequestContext``, the connection kept): the valid request right after each crash succeeds on the
    gateway's pooled connections. (Without that middleware Starlette answered the 500 and raised again,
    uvicorn then closed the connection, and the next request, sent on it before the close arrived,
    broke off unsent, a POST the gateway rightly never sends twice: 7 of 12 runs with two busy loops
    beside them, 0 of 16 since.)"""
    fake, svc = faulty
    fake.mode, fake.calls = "alternate", 0
    client = client_for(svc)
    for _ in range(50):
        with pytest.raises(openai.InternalServerError):
            client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format=fmt)
        audio = client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format=fmt)
        assert len(audio.content) > 100


def test_api_keys(faulty, workdir):
    fake, _ = faulty
    svc = gateway(
        workdir,
        "auth",
        GATEWAY_API_KEYS=json.dumps(["sk-good", "sk-other"]),
        GATEWAY_TTS_URL=f"http://127.0.0.1:{fake.port}",
    )
    try:
        with pytest.raises(openai.AuthenticationError) as err:
            client_for(svc, "sk-bad").models.list()
        assert err.value.code == "invalid_api_key"
        assert err.value.response.headers["www-authenticate"].startswith("Bearer")
        assert [m.id for m in client_for(svc, "sk-other").models.list()] == ["tts-1"]
        assert httpx.get(f"{svc.url}/healthz").status_code == 200  # probes need no key
    finally:
        svc.stop()


def test_upload_over_the_limit_is_413_before_any_backend_work(workdir, spoken):
    closed = f"http://127.0.0.1:{free_port()}"  # a backend call would be a 502, not a 413
    svc = gateway(workdir, "limit", GATEWAY_MAX_UPLOAD_BYTES="1000", GATEWAY_ASR_URL=closed)
    try:
        wav = next(iter(spoken.values()))
        with pytest.raises(openai.APIStatusError) as err:
            client_for(svc).audio.transcriptions.create(model="whisper-1", file=wav.open("rb"))
        assert err.value.status_code == 413 and "Maximum content size limit" in error_of(err.value)["message"]
    finally:
        svc.stop()
