"""Tenants in process: the key file (names, limits, hashed keys, reloads, a broken file), the quota
decisions on the in-process counters, and the real gateway with a key file: rate-limit headers, 429s
in OpenAI's shape before any work, the admin usage route, the audit trail and metrics by key name
(never a key), and a failing store failing open or closed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from services.gateway.tenants import keys as keys_module
from services.gateway.tenants.counters import MemoryCounters
from services.gateway.tenants.keys import ApiKey, KeyRing, Limits, parse_file
from services.gateway.tenants.quotas import Quotas, RateLimited, StoreDown, reset_text
from tests.unit.conftest import audio_file, make_gateway

SECRET = {"research": "sk-research-0123", "ops": "sk-ops-4567", "boss": "sk-boss-89ab"}


def key_file(tmp_path: Path, entries: list[Any]) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    return path


ENTRIES = [
    {"name": "research", "key": SECRET["research"], "owner": "lab",
     "limits": {"requests_per_minute": 3, "characters_per_hour": 40, "audio_seconds_per_hour": 5}},
    {"name": "ops", "sha256": hashlib.sha256(SECRET["ops"].encode()).hexdigest()},
    {"name": "boss", "key": SECRET["boss"], "admin": True},
]  # fmt: skip


# -- the key file ----------------------------------------------------------------------------------
def test_keys_have_names_owners_limits_and_may_be_given_hashed(tmp_path):
    ring = KeyRing(["sk-plain"], key_file(tmp_path, ENTRIES))
    research, ops, plain = (ring.lookup(k) for k in (SECRET["research"], SECRET["ops"], "sk-plain"))
    assert research == ApiKey("research", Limits(3, 5, 40, None), "lab", False)
    assert ops is not None and (ops.name, ops.owner) == ("ops", "ops")
    assert plain is not None and plain.name == "key-1" and ring.lookup("sk-nope") is None
    assert ring.names() == ["boss", "key-1", "ops", "research"]


@pytest.mark.parametrize(
    "bad",
    [
        {"keys": [{"name": "a b", "key": "k"}]},
        {"keys": [{"name": "a", "key": "k"}, {"name": "a", "key": "j"}]},
        {"keys": [{"name": "a"}]},
        {"keys": [{"name": "a", "key": "k", "limits": {"requests_per_day": 3}}]},
        {"keys": [{"name": "a", "key": "k", "limits": {"requests_per_minute": -1}}]},
        [],
    ],
)
def test_a_bad_key_file_is_refused(bad):
    with pytest.raises(ValueError):  # noqa: PT011 - each says what is wrong
        parse_file(json.dumps(bad))


def test_the_file_is_read_again_when_it_changes_and_a_broken_one_keeps_the_old_keys(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(keys_module, "CHECK_SECONDS", 0.0)
    path = key_file(tmp_path, ENTRIES[:1])
    ring = KeyRing([], path)
    assert ring.lookup(SECRET["research"]) is not None
    rotated = tmp_path / "next.json"
    rotated.write_text(json.dumps({"keys": [{"name": "research", "key": "sk-rotated"}]}))
    rotated.replace(path)  # as a Secret volume swaps its files
    rotated_key = ring.lookup("sk-rotated")
    assert ring.lookup(SECRET["research"]) is None and rotated_key is not None and rotated_key.name == "research"
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert ring.lookup("sk-rotated") is not None  # the keys read before stay
    assert "cannot be used" in caplog.text and "sk-rotated" not in caplog.text
    missing = KeyRing([], tmp_path / "absent.json")
    assert missing.enabled and missing.lookup("anything") is None  # never an open API


# -- quota decisions ---------------------------------------------------------------------------------
RESEARCH = ApiKey("research", Limits(requests_per_minute=2, characters_per_hour=10, audio_seconds_per_hour=5,
                                     realtime_sessions=1))  # fmt: skip


def test_requests_and_characters_fit_or_are_refused_with_headers():
    async def scenario():
        quotas = Quotas(MemoryCounters(), True, lambda: None)
        first = await quotas.request(RESEARCH)
        await quotas.request(RESEARCH)
        with pytest.raises(RateLimited) as third:
            await quotas.request(RESEARCH)
        chars = await quotas.characters(RESEARCH, 8)
        with pytest.raises(RateLimited) as too_many:
            await quotas.characters(RESEARCH, 3)
        await quotas.characters(RESEARCH, 2)  # what fits still passes
        return first, third.value, chars, too_many.value

    first, third, chars, too_many = asyncio.run(scenario())
    assert first["x-ratelimit-limit-requests"] == "2" and first["x-ratelimit-remaining-requests"] == "1"
    assert third.status == 429 and third.code == "rate_limit_exceeded" and third.type == "requests"
    assert "on requests per min (RPM): Limit 2, Used 2, Requested 1" in third.message
    assert 1 <= int(third.headers["Retry-After"]) <= 60 and third.headers["x-ratelimit-remaining-requests"] == "0"
    assert chars["x-ratelimit-remaining-characters"] == "2"
    assert "Limit 10, Used 8, Requested 3" in too_many.message


def test_audio_is_admitted_while_some_is_left_and_charged_in_full():
    async def scenario():
        quotas = Quotas(MemoryCounters(), True, lambda: None)
        await quotas.audio_left(RESEARCH)
        await quotas.charge_audio(RESEARCH, 4.0)
        await quotas.audio_left(RESEARCH)  # 1 s left: admitted
        await quotas.charge_audio(RESEARCH, 3.0)  # the request that crosses the limit is charged in full
        with pytest.raises(RateLimited) as refused:
            await quotas.audio_left(RESEARCH)
        return refused.value

    assert "audio seconds per hour: Limit 5, Used 7" in asyncio.run(scenario()).message


def test_realtime_sessions_are_slots_that_free_on_leave():
    async def scenario():
        quotas = Quotas(MemoryCounters(), True, lambda: None)
        await quotas.enter_session(RESEARCH, "a")
        with pytest.raises(RateLimited):
            await quotas.enter_session(RESEARCH, "b")
        await quotas.leave_session(RESEARCH, "a")
        await quotas.enter_session(RESEARCH, "b")

    asyncio.run(scenario())


class BrokenStore(MemoryCounters):
    async def take(self, *args, **kwargs):
        raise ConnectionError("store down")

    async def enter(self, *args, **kwargs):
        raise ConnectionError("store down")


def test_a_failing_store_fails_open_or_closed_and_is_counted():
    errors: list[int] = []

    async def scenario(fail_open: bool):
        quotas = Quotas(BrokenStore(), fail_open, lambda: errors.append(1))
        return await quotas.request(RESEARCH)

    assert asyncio.run(scenario(True)) == {}  # admitted, uncounted
    with pytest.raises(StoreDown) as closed:
        asyncio.run(scenario(False))
    assert closed.value.status == 503 and closed.value.code == "quota_store_unavailable" and len(errors) == 2


def test_reset_times_read_as_openai_writes_them():
    assert [reset_text(s) for s in (0.25, 1, 59.2, 360, 3725)] == ["250ms", "1s", "1m0s", "6m0s", "1h2m5s"]


# -- the gateway with a key file -----------------------------------------------------------------------
def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRET[name]}"}


@pytest.fixture
def keyed(tmp_path):
    with make_gateway(api_keys_file=key_file(tmp_path, ENTRIES)) as gw:
        yield gw


def test_limits_are_headers_on_every_answer_and_429_before_any_work(keyed):
    answers = [keyed.client.get("/v1/models", headers=bearer("research")) for _ in range(3)]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    refused = keyed.client.get("/v1/models", headers=bearer("research"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["retry-after"] and refused.headers["x-ratelimit-reset-requests"].endswith("s")
    other = keyed.client.get("/v1/models", headers=bearer("ops"))  # another key is served
    assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers


def test_speech_characters_are_refused_before_synthesis(tmp_path):
    entries = [{"name": "research", "key": SECRET["research"], "limits": {"characters_per_hour": 40}}]
    with make_gateway(api_keys_file=key_file(tmp_path, entries)) as gw:
        body = {"model": "tts-1", "voice": "alloy", "input": "x" * 30, "response_format": "wav"}
        ok = gw.client.post("/v1/audio/speech", json=body, headers=bearer("research"))
        assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-characters"] == "10"
        before = len([s for s in gw.tts.seen if "/infer" in s.path])
        refused = gw.client.post("/v1/audio/speech", json=body, headers=bearer("research"))
        assert refused.status_code == 429 and "characters per hour: Limit 40, Used 30, Requested 30" in refused.text
        assert len([s for s in gw.tts.seen if "/infer" in s.path]) == before  # no work was asked for


def test_audio_seconds_stop_a_key_after_its_quota(keyed):
    for _ in range(2):  # the fake ASR's result is 2.5 s: 2.5, then 5.0 of 5
        r = keyed.client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files=audio_file(),
                              headers=bearer("research"))  # fmt: skip
        assert r.status_code == 200
    refused = keyed.client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files=audio_file(),
                                headers=bearer("research"))  # fmt: skip
    assert refused.status_code == 429 and "audio seconds per hour" in refused.json()["error"]["message"]


def test_usage_is_for_admin_keys(keyed):
    keyed.client.get("/v1/models", headers=bearer("research"))
    assert keyed.client.get("/v1/admin/usage", headers=bearer("research")).status_code == 403
    usage = keyed.client.get("/v1/admin/usage", headers=bearer("boss")).json()["data"]
    research = next(u for u in usage if u["key"] == "research")
    assert research["owner"] == "lab" and research["requests"]["used"] == 2 and research["requests"]["limit"] == 3


def test_audit_lines_and_metrics_name_keys_and_never_hold_one(keyed, caplog):
    with caplog.at_level(logging.INFO, logger="speech_stack.audit"):
        body = {"model": "tts-1", "voice": "alloy", "input": "Hello there.", "response_format": "wav"}
        keyed.client.post("/v1/audio/speech", headers=bearer("ops"), json=body)
        keyed.client.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "speech_stack.audit"]
    speech = next(entry for entry in lines if entry["route"] == "/v1/audio/speech")
    assert set(speech) == {"time", "request_id", "key", "method", "route", "model", "audio_seconds", "characters",
                           "status", "duration_ms"}  # fmt: skip
    assert (speech["key"], speech["model"], speech["characters"], speech["status"]) == ("ops", "tts-1", 12, 200)
    assert next(entry for entry in lines if entry["status"] == 401)["key"] is None
    text = caplog.text + keyed.client.get("/metrics").text
    assert not any(secret in text for secret in SECRET.values()) and "Hello there" not in caplog.text
    assert 'speech_gateway_key_characters_total{key="ops"} 12.0' in keyed.client.get("/metrics").text


def test_a_failing_store_fails_closed_when_asked(tmp_path, monkeypatch):
    from services.gateway.tenants import tenancy

    monkeypatch.setattr(tenancy, "MemoryCounters", BrokenStore)
    with make_gateway(api_keys_file=key_file(tmp_path, ENTRIES), quota_store_failure="closed") as gw:
        refused = gw.client.get("/v1/models", headers=bearer("research"))
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "quota_store_unavailable"
        assert gw.client.get("/v1/models", headers=bearer("ops")).status_code == 200  # a key without limits
        assert "speech_gateway_quota_store_errors_total 1.0" in gw.client.get("/metrics").text
