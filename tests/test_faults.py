"""Backend failures and auth, seen through the official client."""

import json

import httpx
import openai
import pytest

from scripts.devstack import Service, base_env, free_port
from tests.conftest import start
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
    assert err.value.body["message"].startswith("TTS backend request failed: ConnectError")


def test_stopped_asr_backend_is_502_naming_it(dead_backends_gateway, spoken):
    wav = next(iter(spoken.values()))
    with pytest.raises(openai.InternalServerError) as err:
        client_for(dead_backends_gateway).audio.transcriptions.create(model="whisper-1", file=wav.open("rb"))
    assert err.value.status_code == 502 and err.value.body["message"].startswith("ASR backend request failed")


def test_backend_503_500_timeout_mapping(workdir):
    port = free_port()
    with FaultyBackend(port) as fake:
        svc = gateway(workdir, "faulty", GATEWAY_TTS_URL=f"http://127.0.0.1:{port}", GATEWAY_READ_TIMEOUT="1")
        try:
            client = client_for(svc)
            call = client.audio.speech.with_raw_response.create
            fake.mode = "503"
            with pytest.raises(openai.InternalServerError) as err:
                call(model="tts-1", voice="alloy", input="hi")
            assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "5"
            assert "TTS backend unavailable" in err.value.body["message"]
            fake.mode = "500"
            with pytest.raises(openai.InternalServerError) as err:
                call(model="tts-1", voice="alloy", input="hi")
            assert err.value.status_code == 502 and "CUDA out of memory" in err.value.body["message"]
            fake.mode = "slow"
            with pytest.raises(openai.InternalServerError) as err:
                call(model="tts-1", voice="alloy", input="hi")
            assert err.value.status_code == 504 and "TTS backend timed out" in err.value.body["message"]
            fake.mode = "garbage"
            for fmt in ("wav", "mp3"):  # whole (/infer) and streamed (/infer_stream)
                with pytest.raises(openai.InternalServerError) as err:
                    call(model="tts-1", voice="alloy", input="hi", response_format=fmt)
                assert err.value.status_code == 502
            fake.mode = "cut"
            body = {"model": "tts-1", "voice": "alloy", "input": "hi", "stream_format": "sse"}
            with httpx.stream("POST", f"{svc.url}/v1/audio/speech", json=body, timeout=30) as r:
                events = [line for line in r.iter_lines() if line.startswith("data: ")]
            assert '"type":"speech.audio.delta"' in events[0] and '"type":"error"' in events[-1]
            with pytest.raises(httpx.HTTPError):  # a cut audio stream is a broken response, never a short file
                with httpx.stream("POST", f"{svc.url}/v1/audio/speech", json=body | {"stream_format": "audio"},
                                  timeout=30) as r:
                    r.read()
        finally:
            svc.stop()


def test_api_keys(workdir):
    svc = gateway(workdir, "auth", GATEWAY_API_KEYS=json.dumps(["sk-good", "sk-other"]))
    try:
        with pytest.raises(openai.AuthenticationError) as err:
            client_for(svc, "sk-bad").models.list()
        assert err.value.code == "invalid_api_key"
        assert [m.id for m in client_for(svc, "sk-other").models.list()][0] == "whisper-1"
        import httpx

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
        assert err.value.status_code == 413 and "Maximum content size limit (1000)" in err.value.body["message"]
    finally:
        svc.stop()
