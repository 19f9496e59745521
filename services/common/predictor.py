"""What a predictor is: a model service behind the Open Inference Protocol v2 (``services.common.v2wire``)
whose models load lazily. A subclass implements ``prepare`` (parse and validate, once), ``run``
(blocking, in a worker thread) and, for the streaming route, ``produce`` and ``stream_body``; the
routes around it (``predictor_routes``) and the server (``predictor_server``) are shared."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Scope

from services.common import v2wire
from services.common.admission import Admission
from services.common.draining import Drain
from services.common.errors import Unavailable, no_retry
from services.common.lifecycle import ModelLoadError
from services.common.predictor_metrics import PredictorMetrics
from services.common.predictor_settings import PredictorSettings
from services.common.work import Emit


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model, as the v2 model metadata route describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class LazyPredictor:
    label = "backend"  # ASR or TTS: names the service in public messages
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def __init__(self, name: str, engine: Any, settings: PredictorSettings, metrics: PredictorMetrics) -> None:
        self.name, self.speech_engine, self.settings, self.metrics = name, engine, settings, metrics
        self.admission = Admission(
            self.label,
            settings.max_active,
            settings.max_queue,
            settings.retry_after_seconds,
            on_wait=metrics.queue_wait.observe,
        )
        # requests waiting for a place keep an ``after_request`` model loaded (the next one would reload it)
        engine.waiting = lambda: self.admission.waiting
        metrics.watch(
            lambda: {"waiting": self.admission.waiting, "active": self.admission.active, "models": self.models_loaded()}
        )

    # -- what a predictor provides ------------------------------------------------------------
    def public_models(self) -> list[str]:
        raise NotImplementedError

    def models_status(self) -> dict:
        """Model lifetimes for ``GET /status``: loaded, loading, in use, load count. Never waits
        for a load (``ManagedModel.status``)."""
        raise NotImplementedError

    def models_loaded(self) -> dict[str, bool]:
        return {
            name: bool(state.get("loaded"))
            for name, state in self.models_status().items()
            if isinstance(state, dict) and "loaded" in state
        }

    def prepare(self, request: v2wire.InferRequest) -> Any:
        """A validated job, or ``BadRequest``: everything decided before any model work. Runs in a
        worker thread (it may read files), never on the event loop."""
        raise NotImplementedError

    def run(self, job: Any, cancel: threading.Event) -> list[v2wire.BinaryOutput]:
        raise NotImplementedError

    def produce(self, job: Any, emit: Emit, cancel: threading.Event) -> None:
        raise NotImplementedError

    def stream_body(self, first: Any, items: AsyncIterator[Any]) -> StreamingResponse:
        raise NotImplementedError

    def add_routes(self, app: FastAPI, drain: Drain) -> None:
        """The predictor's own routes besides inference (ASR: live sessions; TTS: the voice library)."""

    def body_limit(self, scope: Scope) -> int:
        return self.settings.max_body_bytes

    # -- shared -----------------------------------------------------------------------------------
    @contextmanager
    def mapped_errors(self) -> Iterator[None]:
        """Model-load failures -> 503 naming the model; permanent ones are not worth a retry."""
        try:
            yield
        except ModelLoadError as exc:
            headers = no_retry() if exc.permanent else {"Retry-After": str(self.settings.retry_after_seconds)}
            raise Unavailable(
                f"{self.label} backend unavailable: {exc}", code="model_unavailable", headers=headers
            ) from exc

    def status(self) -> dict:
        return {**self.models_status(), "admission": self.admission.status()}

    def model_metadata(self) -> dict[str, Any]:
        """The v2 model metadata (``GET /v2/models/<name>``)."""
        return {
            "name": self.name,
            "versions": [],
            "platform": f"speech-stack-{self.label.lower()}",
            "inputs": [t.metadata() for t in self.inputs],
            "outputs": [t.metadata() for t in self.outputs],
        }
