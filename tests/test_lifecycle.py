"""The shared model lifetime: unit tests of the policies, then the policies in real predictors."""

import threading
import time

import httpx
import pytest

from scripts.devstack import local_stack
from services.common.lifecycle import ManagedModel, ModelLoadError, parse_unload_policy
from tests.conftest import start, whisper_models


def managed(policy):
    unloaded: list[object] = []
    model = ManagedModel("m", object, parse_unload_policy(policy), on_unload=unloaded.append)
    return model, unloaded


@pytest.mark.parametrize(("raw", "expected"), [("after_request", 0), ("never", -1), ("300", 300), (2.5, 2.5)])
def test_policy_parsing(raw, expected):
    assert parse_unload_policy(raw) == expected


@pytest.mark.parametrize("raw", ["sometimes", "-5", True])
def test_bad_policy_rejected(raw):
    with pytest.raises(ValueError, match=r"unload policy|idle seconds"):
        parse_unload_policy(raw)


def test_after_request_unloads_when_last_user_leaves():
    model, unloaded = managed("after_request")
    with model.use() as first:
        with model.use() as second:
            assert first is second and model.in_use == 2
        assert model.loaded
    assert not model.loaded and len(unloaded) == 1 and model.loads == 1


def test_never_keeps_and_unload_is_refused_while_in_use():
    model, _unloaded = managed("never")
    with model.use():
        assert model.unload() is False and model.loaded
    assert model.loaded and model.unload() is True and not model.loaded


def test_idle_ttl_unloads_later_and_reuse_cancels_the_timer():
    model, _ = managed(0.3)
    with model.use():
        pass
    assert model.loaded
    time.sleep(0.15)
    first = model._timer
    with model.use():  # cancels the pending unload
        assert not model.timer_pending and first.finished.is_set()
    time.sleep(0.2)  # past the first timer's deadline: it must not have unloaded
    assert model.loaded
    deadline = time.monotonic() + 5
    while model.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not model.loaded and model.loads == 1


def test_load_failure_names_model_and_recovers():
    calls = []

    def loader():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk on fire")
        return object()

    model = ManagedModel("coqui:x", loader, -1)
    with pytest.raises(ModelLoadError, match="could not load model 'coqui:x'") as err, model.use():
        pass
    assert isinstance(err.value.__cause__, OSError)  # the cause is kept for the log
    with model.use():
        assert model.loaded


def test_concurrent_users_share_one_load():
    def slow_load() -> object:
        time.sleep(0.2)
        return object()

    model = ManagedModel("m", slow_load, 0)
    seen, together = [], threading.Barrier(4)

    def request():
        with model.use() as loaded:
            seen.append(id(loaded))
            together.wait(5)  # all four hold the model at once

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and len(set(seen)) == 1 and model.loads == 1 and not model.loaded


def test_real_asr_predictor_unloads_after_each_request_by_default(workdir, spoken):
    """The seed's behaviour, observed on the predictor's /status while the gateway transcribes."""
    services = local_stack(asr_env={"ASR_MODELS": whisper_models()}, tts_env={}, gateway_env={})
    asr, _, gw = services
    start(services, workdir / "logs" / "after-request")
    try:
        status = httpx.get(f"{asr.url}/status").json()["model:whisper-1"]
        assert status["loaded"] is False and status["loads"] == 0  # lazy: nothing loaded yet
        wav = next(iter(spoken.values()))
        for expected_loads in (1, 2):
            r = httpx.post(
                f"{gw.url}/v1/audio/transcriptions",
                files={"file": wav.read_bytes()},
                data={"model": "whisper-1"},
                timeout=300,
            )
            assert r.status_code == 200 and "dog" in r.json()["text"]
            status = httpx.get(f"{asr.url}/status").json()["model:whisper-1"]
            assert status == {
                "loaded": False,
                "loading": False,
                "in_use": 0,
                "loads": expected_loads,
                "unload_after": 0.0,
            }
    finally:
        for svc in reversed(services):
            svc.stop()
