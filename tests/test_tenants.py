"""Limits per key across gateway replicas: two gateway processes share one real Redis server (Debian's
redis-server on loopback) in front of the real predictors, with a key file. A key limited to N
requests a minute gets exactly N answers across both gateways, then 429s the official SDK reads
(Retry-After, x-ratelimit-*); an audio-seconds limit stops one key while another is served; with
Redis stopped, the fail-open gateway still serves and the fail-closed one answers 503, and both
count again once it is back; a key rotated in the file works without a restart and the removed one
is refused; the audit lines have every field and no content; metrics by key never hold a key."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from scripts.devstack import Service, base_env, free_port
from tests.conftest import SENTENCES, start

KEYS = {
    "rpm": ("sk-tenant-rpm-0001", {"requests_per_minute": 5}),
    "audio": ("sk-tenant-audio-0002", {"audio_seconds_per_hour": 5}),
    "other": ("sk-tenant-other-0003", {}),
    "old": ("sk-tenant-old-0004", {}),
}


def write_keys(path: Path, keys: dict[str, tuple[str, dict]]) -> None:
    entries = [{"name": name, "key": secret, "limits": limits} for name, (secret, limits) in keys.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"keys": entries}))
    tmp.replace(path)


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port, self.dir = free_port(), workdir / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        options = {"--port": str(self.port), "--bind": "127.0.0.1", "--save": "", "--appendonly": "no"}
        command = ["redis-server", *(part for pair in options.items() for part in pair), "--dir", str(self.dir)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        ping = ["redis-cli", "-p", str(self.port), "ping"]
        while subprocess.run(ping, check=False, capture_output=True).stdout != b"PONG\n":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="module")
def redis(workdir) -> Iterator[Redis]:
    server = Redis(workdir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(stack, redis, workdir) -> Iterator[tuple[Service, Service, Path]]:
    keys_file = workdir / "tenant-keys.json"
    write_keys(keys_file, KEYS)
    services = []
    for name, failure in (("gateway-open", "open"), ("gateway-closed", "closed")):
        gw = Service(name, "services.gateway", free_port())
        gw.env = base_env(1, True) | {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(gw.port),
            "GATEWAY_ASR_URL": stack[0].url,
            "GATEWAY_TTS_URL": stack[1].url,
            "GATEWAY_API_KEYS_FILE": str(keys_file),
            "GATEWAY_QUOTA_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "GATEWAY_QUOTA_STORE_FAILURE": failure,
        }
        services.append(gw)
    start(services, workdir / "logs" / "tenants")
    yield services[0], services[1], keys_file
    for gw in services:
        gw.stop()


def sdk(gw: Service, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEYS[name][0], max_retries=0, timeout=120)


def clear_of_the_window_end(window: int, margin: float = 20.0) -> None:
    """Counts are per fixed window: start a counting test where the window has room to finish in."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.2)


def test_a_request_limit_holds_across_both_gateways(gateways):
    a, b, _ = gateways
    clear_of_the_window_end(60)
    answers = [sdk(gw, "rpm").models.with_raw_response.list() for gw in (a, b, a, b, a)]
    remaining = [r.headers["x-ratelimit-remaining-requests"] for r in answers]
    assert remaining == ["4", "3", "2", "1", "0"]  # one count for both gateways
    for gw in (b, a):
        with pytest.raises(openai.RateLimitError) as refused:
            sdk(gw, "rpm").models.list()
        headers = refused.value.response.headers
        assert refused.value.code == "rate_limit_exceeded" and 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-limit-requests"] == "5" and headers["x-ratelimit-remaining-requests"] == "0"
    assert sdk(b, "other").models.list().data  # another key is served


def test_an_audio_limit_stops_one_key_while_another_is_served(gateways, spoken):
    a, b, _ = gateways
    clear_of_the_window_end(3600, 60)
    clip = spoken[SENTENCES[4]]  # about 3.6 s: admitted twice under a 5 s limit (the second crosses it)
    for gw in (a, b):
        with clip.open("rb") as f:
            assert sdk(gw, "audio").audio.transcriptions.create(model="whisper-1", file=f).text
    with clip.open("rb") as f, pytest.raises(openai.RateLimitError) as refused:
        sdk(a, "audio").audio.transcriptions.create(model="whisper-1", file=f)
    assert "audio seconds per hour: Limit 5" in refused.value.message
    with clip.open("rb") as f:
        assert sdk(b, "other").audio.transcriptions.create(model="whisper-1", file=f).text


def test_a_store_that_goes_away_fails_open_or_closed_and_comes_back(gateways, redis):
    a, b, _ = gateways
    redis.stop()
    try:
        assert sdk(a, "rpm").models.with_raw_response.list().http_response.status_code == 200  # open: served
        with pytest.raises(openai.InternalServerError) as closed:
            sdk(b, "rpm").models.list()
        assert closed.value.status_code == 503 and closed.value.code == "quota_store_unavailable"
        for gw in (a, b):
            assert httpx.get(f"{gw.url}/healthz").status_code == 200  # nothing crashed
            metrics = httpx.get(f"{gw.url}/metrics").text
            assert "speech_gateway_quota_store_errors_total 0.0" not in metrics
    finally:
        redis.start()
    clear_of_the_window_end(60)
    assert sdk(b, "other").models.list().data  # the store is back


def test_a_key_rotated_in_the_file_works_without_a_restart(gateways):
    a, _, keys_file = gateways
    assert sdk(a, "old").models.list().data
    rotated = {k: v for k, v in KEYS.items() if k != "old"} | {"new": ("sk-tenant-new-0005", {})}
    write_keys(keys_file, rotated)
    new = openai.OpenAI(base_url=f"{a.url}/v1", api_key="sk-tenant-new-0005", max_retries=0)
    deadline = time.monotonic() + 15
    while True:
        try:
            new.models.list()
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "the new key was not taken up"
            time.sleep(0.2)
    with pytest.raises(openai.AuthenticationError):
        sdk(a, "old").models.list()


def test_audit_lines_name_keys_and_hold_no_content_and_metrics_no_key(gateways):
    a, _, _ = gateways
    client = sdk(a, "other")
    client.audio.speech.create(model="tts-1", voice="alloy", input="A secret sentence.", response_format="wav")
    assert a.log_path is not None
    log = a.log_path.read_text()
    lines = [json.loads(line[line.index("{") :]) for line in log.splitlines() if "speech_stack.audit" in line]
    speech = [entry for entry in lines if entry["route"] == "/v1/audio/speech"][-1]
    assert (speech["key"], speech["model"], speech["characters"], speech["status"]) == ("other", "tts-1", 18, 200)
    assert speech["request_id"] and speech["duration_ms"] >= 0 and "time" in speech
    metrics = httpx.get(f"{a.url}/metrics").text
    assert 'speech_gateway_key_requests_total{key="other",route="/v1/audio/speech"}' in metrics
    assert not any(secret in text for secret, _ in KEYS.values() for text in (log, metrics))
    assert "A secret sentence" not in log
