"""The segment batcher with a fake CTranslate2 model at the boundary: grouping by call settings,
first-in-first-out with a per-request share, work conservation, cancellation, failures."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from services.asr.batcher import CallKey, SegmentBatcher, wait
from services.common.work import Cancelled

KEY = CallKey(
    beam_size=5,
    patience=1.0,
    length_penalty=1.0,
    repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    suppress_blank=True,
    suppress_tokens=(-1,),
    max_length=448,
    temperature=0.0,
    logprobs=False,
    prompt_length=4,
    timestamps=False,
)


class FakeModel:
    """Records each call; ``gate`` holds the first generate until released (a batch in progress)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], dict]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a generate call is running (held at the gate)

    def encode(self, features: np.ndarray) -> np.ndarray:
        return features

    def generate(self, encoded: np.ndarray, prompts: list[list[int]], **kwargs) -> list:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(([int(f[0, 0]) for f in encoded], kwargs))
        return [f"result {int(f[0, 0])}" for f in encoded]


def features(n: int) -> np.ndarray:
    return np.full((80, 3000), n, dtype=np.float32)


def batcher(model: FakeModel, **kwargs) -> SegmentBatcher:
    return SegmentBatcher(model.encode, model.generate, **{"batch_size": 4, **kwargs})


def test_an_idle_model_decodes_at_once_and_waiting_segments_share_the_next_call():
    model = FakeModel()
    b = batcher(model)
    model.gate.clear()
    first = b.submit("a", features(0), [1, 2, 3, 4], KEY)
    assert model.entered.wait(10)  # the first call is running: the next segments pile up
    rest = [b.submit(owner, features(n), [1, 2, 3, 4], KEY) for n, owner in ((1, "b"), (2, "c"), (3, "d"))]
    model.gate.set()
    assert wait(first, None) == "result 0" and [wait(f, None) for f in rest] == ["result 1", "result 2", "result 3"]
    assert [ids for ids, _ in model.calls] == [[0], [1, 2, 3]]


def test_calls_are_grouped_by_what_ctranslate2_fixes_per_call():
    model = FakeModel()
    b = batcher(model, batch_size=8)
    model.gate.clear()
    wait_first = b.submit("x", features(9), [1, 2, 3, 4], KEY)
    assert model.entered.wait(10)
    sampled = replace(KEY, temperature=0.4)
    longer = replace(KEY, prompt_length=6)
    futures = [
        b.submit("a", features(0), [1, 2, 3, 4], KEY),
        b.submit("b", features(1), [1, 2, 3, 4], sampled),
        b.submit("c", features(2), [9, 1, 2, 3, 4, 5], longer),
        b.submit("d", features(3), [5, 6, 7, 8], KEY),
    ]
    model.gate.set()
    wait(wait_first, None)
    [wait(f, None) for f in futures]
    groups = {tuple(ids): kwargs for ids, kwargs in model.calls[1:]}
    assert set(groups) == {(0, 3), (1,), (2,)}
    assert groups[(1,)]["sampling_temperature"] == 0.4 and groups[(1,)]["beam_size"] == 1
    assert groups[(0, 3)]["beam_size"] == 5 and "sampling_temperature" not in groups[(0, 3)]
    assert all(k["return_no_speech_prob"] and k["return_scores"] for k in groups.values())


def test_one_request_takes_at_most_its_share_and_order_is_first_in_first_out():
    model = FakeModel()
    b = batcher(model, batch_size=4, share=0.5)
    model.gate.clear()
    b.submit("warm", features(99), [1], KEY)
    assert model.entered.wait(10)
    long_file = [b.submit("long", features(n), [1], KEY) for n in range(10)]
    clip = b.submit("clip", features(50), [1], KEY)
    model.gate.set()
    assert wait(clip, None) == "result 50"
    [wait(f, None) for f in long_file]
    batches = [ids for ids, _ in model.calls[1:]]
    assert batches[0] == [0, 1, 50, 2]  # two of the file's, the clip, then the room left goes to the file
    assert [n for ids in batches for n in ids if n != 50] == list(range(10))


def test_segments_of_a_request_that_left_are_dropped():
    model = FakeModel()
    b = batcher(model)
    model.gate.clear()
    b.submit("warm", features(99), [1], KEY)
    assert model.entered.wait(10)
    gone = threading.Event()
    dropped = [b.submit("gone", features(n), [1], KEY, gone) for n in range(3)]
    kept = b.submit("stays", features(7), [1], KEY)
    gone.set()
    with pytest.raises(Cancelled):
        wait(dropped[0], gone)
    model.gate.set()
    assert wait(kept, None) == "result 7"
    assert all(isinstance(f.exception(5), Cancelled) for f in dropped)
    assert [ids for ids, _ in model.calls] == [[99], [7]]


def test_a_failed_call_fails_its_segments_and_the_batcher_goes_on():
    model = FakeModel()
    calls = {"n": 0}

    def flaky(encoded, prompts, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory")
        return model.generate(encoded, prompts, **kwargs)

    b = SegmentBatcher(model.encode, flaky, batch_size=4)
    with pytest.raises(RuntimeError):
        wait(b.submit("a", features(1), [1], KEY), None)
    assert wait(b.submit("b", features(2), [1], KEY), None) == "result 2"
    b.close()
    with pytest.raises(RuntimeError):
        b.submit("c", features(3), [1], KEY)


def test_dispatches_are_reported():
    seen = []
    model = FakeModel()
    b = SegmentBatcher(model.encode, model.generate, batch_size=4, on_dispatch=lambda *a: seen.append(a))
    wait(b.submit("a", features(1), [1], KEY), None)
    assert seen[0][0] == 1 and seen[0][1] == 1 and len(seen[0][2]) == 1


def test_a_failing_report_or_a_short_answer_never_stops_the_batcher():
    """Before, an exception in on_dispatch or a result count that did not match ended the batcher's
    thread: every later segment then waited for ever."""
    model = FakeModel()

    def report(*_):
        raise ValueError("a metrics bug")

    b = SegmentBatcher(model.encode, model.generate, batch_size=4, on_dispatch=report)
    assert wait(b.submit("a", features(1), [1], KEY), None) == "result 1"  # reported badly, decoded anyway

    def short(encoded, prompts, **kwargs):
        return model.generate(encoded, prompts, **kwargs)[:-1]  # one result fewer than segments

    b = SegmentBatcher(model.encode, short, batch_size=4)
    with pytest.raises(RuntimeError, match=r"0 results for 1 segments"):
        wait(b.submit("a", features(1), [1], KEY), None)
    second = b.submit("b", features(2), [1], KEY)
    with pytest.raises(RuntimeError):
        second.result(10)  # answered (with the error), not left waiting


def test_a_failed_batch_is_logged_with_the_request_ids_it_held(caplog):
    from services.common.logs import REQUEST_ID

    def broken(encoded, prompts, **kwargs):
        raise RuntimeError("CUDA out of memory")

    model = FakeModel()
    b = SegmentBatcher(model.encode, broken, batch_size=4)
    token = REQUEST_ID.set("req_abc")
    try:
        with pytest.raises(RuntimeError):
            wait(b.submit("a", features(1), [1], KEY), None)
    finally:
        REQUEST_ID.reset(token)
    assert any("req_abc" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
