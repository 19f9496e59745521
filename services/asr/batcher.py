"""Cross-request batching: one ``SegmentBatcher`` per loaded Whisper model shares CTranslate2's
``encode`` and ``generate`` calls between the segments of every request waiting for that model.

Requests still decode their audio, run VAD and compute features on their own threads; they submit
one job per VAD segment and wait for the results in order. The batcher's thread takes the waiting
jobs, first in first out, at most ``share`` of a batch from any one request (a two-hour file cannot
starve a five-second clip), groups them by what CTranslate2 fixes per call (``CallKey``), and runs one
encode and one generate per group. It is work-conserving: an idle model decodes at once; jobs pile up
only while a batch runs (plus ``max_wait`` when set). Jobs of a request that left are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.common.logs import REQUEST_ID
from services.common.work import Cancelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallKey:
    """Everything one CTranslate2 Whisper ``generate`` call takes for the whole batch (whisper.cc):
    decoding settings, whether logits come back, and the prompt length (``<|startoftranscript|>``
    must sit at the same position in every item; the timestamp mode is read from the first prompt)."""

    beam_size: int
    patience: float
    length_penalty: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    suppress_blank: bool
    suppress_tokens: tuple[int, ...]
    max_length: int
    temperature: float  # 0: beam search (greedy with beam 1); above: sampling at that temperature
    logprobs: bool
    prompt_length: int
    timestamps: bool

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("temperature", "logprobs", "prompt_length", "timestamps", "suppress_tokens")
        }
        kwargs |= {
            "suppress_tokens": list(self.suppress_tokens),
            "return_scores": True,
            "return_no_speech_prob": True,
            "return_logits_vocab": self.logprobs,
        }
        if self.temperature > 0:
            kwargs |= {
                "beam_size": 1,
                "num_hypotheses": 1,
                "sampling_topk": 0,
                "sampling_temperature": self.temperature,
            }
        return kwargs


@dataclass
class SegmentJob:
    owner: object  # the request (fairness, cancellation)
    features: np.ndarray  # [n_mels, 3000]
    prompt: list[int]
    key: CallKey
    cancel: threading.Event | None
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=REQUEST_ID.get)  # the batcher's log lines name the requests


class SegmentBatcher:
    def __init__(
        self,
        encode: Callable[[np.ndarray], Any],
        generate: Callable[..., list],
        *,
        batch_size: int,
        max_wait: float = 0.0,
        share: float = 0.5,
        on_dispatch: Callable[[int, int, list[float]], None] | None = None,
    ) -> None:
        self.encode, self.generate = encode, generate
        self.batch_size, self.max_wait = batch_size, max_wait
        self.per_owner = max(1, int(batch_size * share))
        self.on_dispatch = on_dispatch  # (segments, groups, queue waits) per dispatch
        self._jobs: deque[SegmentJob] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- requests' side ---------------------------------------------------------------------------
    def submit(
        self,
        owner: object,
        features: np.ndarray,
        prompt: list[int],
        key: CallKey,
        cancel: threading.Event | None = None,
        *,
        first: bool = False,
    ) -> Future:
        """Queue one segment (``first``: ahead of the others, for a re-decode the request waits on)."""
        job = SegmentJob(owner, features, prompt, key, cancel)
        with self._ready:
            if self._closed:
                raise RuntimeError("the model was unloaded")
            if first:
                self._jobs.appendleft(job)
            else:
                self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="segment-batcher", daemon=True)
                self._thread.start()
            self._ready.notify()
        return job.future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            for job in self._jobs:
                job.future.set_exception(RuntimeError("the model was unloaded"))
            self._jobs.clear()
            self._ready.notify()

    # -- the batcher's thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                if self.max_wait > 0:
                    deadline = time.monotonic() + self.max_wait
                    while len(self._jobs) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                        self._ready.wait(left)
                jobs = self._take()
            if jobs:
                self._dispatch(jobs)

    def _dispatch(self, jobs: list[SegmentJob]) -> None:
        """Run one batch; whatever goes wrong fails that batch's segments, never the batcher's thread
        (its waiters would otherwise wait for ever)."""
        try:
            self._run(jobs)
        except Exception as exc:
            log.exception("a batch of %d segment(s) failed (requests %s)", len(jobs), _ids(jobs))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)

    def _take(self) -> list[SegmentJob]:
        """Up to a batch of live jobs, first in first out, at most ``per_owner`` from one request."""
        taken: list[SegmentJob] = []
        counts: dict[int, int] = {}
        kept: deque[SegmentJob] = deque()
        while self._jobs and len(taken) < self.batch_size:
            job = self._jobs.popleft()
            if job.cancel is not None and job.cancel.is_set():
                job.future.set_exception(Cancelled("client disconnected"))
                continue
            owner = id(job.owner)
            if counts.get(owner, 0) >= self.per_owner:
                kept.append(job)
                continue
            counts[owner] = counts.get(owner, 0) + 1
            taken.append(job)
        while kept and len(taken) < self.batch_size:  # no one else is waiting: the share does not apply
            taken.append(kept.popleft())
        self._jobs.extendleft(reversed(kept))
        return taken

    def _run(self, jobs: list[SegmentJob]) -> None:
        groups: dict[CallKey, list[SegmentJob]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        now = time.perf_counter()
        if self.on_dispatch is not None:
            try:
                self.on_dispatch(len(jobs), len(groups), [now - j.queued for j in jobs])
            except Exception:
                log.exception("reporting a batch failed")  # the batch itself still runs
        for key, group in groups.items():
            try:
                encoded = self.encode(np.stack([j.features for j in group]))
                results = self.generate(encoded, [j.prompt for j in group], **key.generate_kwargs())
                if len(results) != len(group):
                    raise RuntimeError(f"the model returned {len(results)} results for {len(group)} segments")
            except Exception as exc:
                log.exception("batched decode of %d segment(s) failed (requests %s)", len(group), _ids(group))
                for job in group:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(group, results, strict=True):
                job.future.set_result(result)


def _ids(jobs: list[SegmentJob]) -> str:
    return ", ".join(dict.fromkeys(job.request_id for job in jobs))


def wait(future: Future, cancel: threading.Event | None, poll: float = 0.1) -> Any:
    """A job's result; ``Cancelled`` as soon as the request's client leaves."""
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("client disconnected")
        try:
            return future.result(timeout=poll)
        except TimeoutError:
            continue
