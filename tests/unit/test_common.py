"""Shared building blocks in isolation: admission, the v2 wire format, model lifetime, logging."""

import asyncio
import json
import logging
import threading
import time

import pytest

from services.common import v2wire
from services.common.admission import Admission
from services.common.errors import Overloaded
from services.common.lifecycle import ManagedModel, ModelLoadError, parse_unload_policy
from services.common.logs import JsonFormatter, accept_request_id


def test_admission_bounds_active_and_queued_and_refuses_the_rest():
    async def scenario():
        adm = Admission("ASR", max_active=1, max_queue=2, retry_after=3)
        tickets = [adm.admit() for _ in range(3)]
        with pytest.raises(Overloaded) as err:
            adm.admit()
        assert err.value.status == 429 and err.value.headers["Retry-After"] == "3"
        await tickets[0].start()
        waiting = asyncio.ensure_future(tickets[1].start())
        await asyncio.sleep(0.01)
        assert adm.active == 1 and adm.waiting == 2 and not waiting.done()
        tickets[2].done()  # a queued request whose client left frees its place at once
        assert adm.waiting == 1
        tickets[0].done()
        await asyncio.wait_for(waiting, 1)
        assert adm.active == 1 and adm.waiting == 0
        tickets[1].done()
        tickets[1].done()  # closing twice is harmless
        assert adm.admitted == 0 and adm.active == 0

    asyncio.run(scenario())


def test_a_cancelled_wait_gives_its_place_back():
    async def scenario():
        adm = Admission("TTS", max_active=1, max_queue=1, retry_after=1)
        first, second = adm.admit(), adm.admit()
        await first.start()
        wait = asyncio.ensure_future(second.start())
        await asyncio.sleep(0.01)
        wait.cancel()
        second.done()
        first.done()
        third = adm.admit()
        await asyncio.wait_for(third.start(), 1)
        assert adm.active == 1

    asyncio.run(scenario())


def test_v2_request_round_trip_without_copies():
    header = v2wire.InferRequestHeader("rid", {"model": "m"})
    header.binary_inputs = [v2wire.BinaryInput.bytes_elements("refs", [3, 0, 2])]
    head = header.encode()
    body = head + b"".join(v2wire.element_prefix(len(e)) + e for e in (b"abc", b"", b"xy"))
    parsed = v2wire.parse_request(body, str(len(head)))
    elements = parsed.tensor("refs").elements()
    assert [bytes(e) for e in elements] == [b"abc", b"", b"xy"] and all(isinstance(e, memoryview) for e in elements)
    assert parsed.id == "rid" and parsed.parameters["model"] == "m"


@pytest.mark.parametrize("cut", [1, 5, 10])
def test_truncated_tensors_are_wire_errors(cut):
    header = v2wire.InferRequestHeader("rid")
    header.binary_inputs = [v2wire.BinaryInput.bytes_elements("audio", [10])]
    head = header.encode()
    body = head + v2wire.element_prefix(10) + b"0123456789"
    with pytest.raises(v2wire.WireError):
        v2wire.parse_request(body[:-cut], str(len(head))).tensor("audio").elements()


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"inputs": 3}', b'{"inputs": [{"name": "a"}]}'])
def test_malformed_requests_are_wire_errors(body):
    with pytest.raises(v2wire.WireError):
        v2wire.parse_request(body, None)


def managed(policy):
    unloaded: list[object] = []
    model = ManagedModel("m", object, parse_unload_policy(policy), on_unload=unloaded.append)
    return model, unloaded


def test_reuse_cancels_the_idle_timer():
    model, unloaded = managed(30)
    with model.use():
        pass
    assert model.timer_pending
    first_timer = model._timer
    with model.use():
        assert not model.timer_pending  # the pending unload is cancelled while in use
    assert model.timer_pending and model._timer is not first_timer and first_timer.finished.is_set()
    assert model.loaded and not unloaded


def test_a_stale_timer_never_unloads():
    """An idle timer armed before a reuse (it may fire while the reuse runs, or wait for the lock until
    after it) carries an old generation: it unloads neither during the reuse nor after it."""
    model, unloaded = managed(60)
    with model.use():
        pass
    stale_generation = model._generation
    with model.use():
        model._idle_unload(stale_generation)  # fired during the reuse: the model is in use
    model._idle_unload(stale_generation)  # fired late, after the reuse armed a timer of its own
    assert model.loaded and not unloaded and model.timer_pending


def test_exclusive_serialises_users():
    model = ManagedModel("m", object, -1)
    inside, overlap = [], []

    def work():
        with model.exclusive():
            inside.append(1)
            overlap.append(len(inside))
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlap) == 1 and model.loads == 1


@pytest.mark.parametrize(
    ("cause", "permanent"),
    [
        (FileNotFoundError("no such model"), True),
        (OSError("gated repo"), True),
        (ValueError("bad config"), True),
        (MemoryError(), False),
        (TimeoutError(), False),
        (ConnectionError(), False),
    ],
)
def test_load_failures_say_whether_a_retry_can_help(cause, permanent):
    def loader():
        raise cause

    model = ManagedModel("coqui:x", loader, -1)
    with pytest.raises(ModelLoadError) as err, model.use():
        pass
    assert err.value.permanent is permanent and "coqui:x" in str(err.value)
    assert not str(cause) or str(cause) not in str(err.value)  # the cause goes to the log, not the message


def test_status_answers_while_the_model_loads():
    """A scrape or /status during a (slow) load must not wait for it."""
    release, entered = threading.Event(), threading.Event()

    def loader():
        entered.set()
        release.wait(30)
        return object()

    model = ManagedModel("m", loader, -1)
    user = threading.Thread(target=lambda: model.use().__enter__())
    user.start()
    assert entered.wait(10)
    answers = []
    asker = threading.Thread(target=lambda: answers.append(model.status()))
    asker.start()
    asker.join(5)  # before the fix status() took the lock held across the load: it waited here
    try:
        assert answers == [{"loaded": False, "loading": True, "in_use": 1, "loads": 0, "unload_after": -1}]
    finally:
        release.set()
        user.join(10)
    assert model.status()["loaded"] and model.loads == 1


def test_after_request_keeps_the_model_while_requests_wait_for_it():
    waiting = [1]
    unloaded: list[object] = []
    model = ManagedModel("m", object, 0.0, on_unload=unloaded.append, keep_while=lambda: waiting[0] > 0)
    with model.use():
        pass
    assert model.loaded and model.timer_pending  # the next request would only load it again
    generation = model._generation
    model._idle_unload(generation)  # the re-check while a request still waits: kept, re-armed
    assert model.loaded and model.timer_pending
    waiting[0] = 0
    with model.use():
        pass  # the last one out with nobody waiting unloads at once
    assert not model.loaded and len(unloaded) == 1 and model.loads == 1


def test_a_wrapped_transient_cause_is_still_transient():
    """A hub outage arrives wrapped in the library's own error type (as huggingface_hub wraps it)."""

    class LibraryError(OSError):
        pass

    def loader():
        try:
            raise ConnectionError("connection reset")
        except ConnectionError as exc:
            raise LibraryError("could not fetch the model") from exc

    model = ManagedModel("whisper:x", loader, -1)
    with pytest.raises(ModelLoadError) as err, model.use():
        pass
    assert err.value.permanent is False


def test_request_ids_are_bounded_and_plain():
    assert accept_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in ("", "a" * 129, "has space", "new\nline", None):
        assert accept_request_id(bad).startswith("req_")


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.service, record.request_id = "asr", "req_1"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "hello world" and doc["request_id"] == "req_1" and doc["service"] == "asr"
