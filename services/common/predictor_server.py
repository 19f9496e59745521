"""Serve a custom KServe predictor: KServe's model server app and v2 routes (health, readiness,
metadata), with our own inference routes in front of KServe's and the service's guards around it.

Per inference request, in order: request id and error envelope (``RequestContext``), drain gate
(503 while shutting down), shared-token check, body limit (413 while reading), admission (429 when
full, before the body is read), parse and validate once (400), wait for a place, model work in a
worker thread that stops when the client leaves, answer (binary v2 outputs, or a stream).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from kserve import Model, ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import app as kserve_app
from kserve.protocol.rest.server import RESTServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common import logs, v2wire
from services.common.admission import Admission
from services.common.asgi import BodyLimit, RequestContext, RequestRecord, header, send_error
from services.common.draining import Drain, DrainGate, DrainingServer
from services.common.errors import BadRequest, InternalError, ServiceError, Unauthorized, Unavailable, no_retry
from services.common.lifecycle import ModelLoadError
from services.common.predictor_metrics import PredictorMetrics
from services.common.predictor_settings import PredictorSettings
from services.common.work import ClientGone, ClientWatch, Emit, run_in_worker, stream_from_worker

log = logging.getLogger(__name__)
J = TypeVar("J")
T = TypeVar("T")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/", "/v2/health/live", "/v2/health/ready")


class LazyPredictor(Model):
    """A predictor whose model loads lazily on the first request: KServe's "ready" only means
    "accepting requests". Subclasses implement ``prepare`` (parse and validate, once), ``run``
    (blocking, in a worker thread) and, for the streaming route, ``produce`` and ``stream_body``."""

    label = "backend"  # ASR or TTS: names the service in public messages

    def __init__(self, name: str, engine: Any, settings: PredictorSettings, metrics: PredictorMetrics) -> None:
        super().__init__(name)
        # not ``self.engine``: KServe reserves that name for engines it starts itself
        self.speech_engine, self.settings, self.metrics = engine, settings, metrics
        self.admission = Admission(
            self.label,
            settings.max_active,
            settings.max_queue,
            settings.retry_after_seconds,
            on_wait=metrics.queue_wait.observe,
        )
        metrics.watch(
            lambda: {"waiting": self.admission.waiting, "active": self.admission.active, "models": self.models_loaded()}
        )

    def load(self) -> bool:
        self.ready = True
        return self.ready

    # -- what a predictor provides ------------------------------------------------------------
    def public_models(self) -> list[str]:
        raise NotImplementedError

    def models_status(self) -> dict:
        """Model lifetimes for ``GET /status``: loaded, in use, load count."""
        raise NotImplementedError

    def models_loaded(self) -> dict[str, bool]:
        return {
            name: bool(state.get("loaded"))
            for name, state in self.models_status().items()
            if isinstance(state, dict) and "loaded" in state
        }

    def prepare(self, request: v2wire.InferRequest) -> Any:
        """A validated job, or ``BadRequest``: everything decided before any model work."""
        raise NotImplementedError

    def run(self, job: Any, cancel) -> list[v2wire.BinaryOutput]:
        raise NotImplementedError

    def produce(self, job: Any, emit: Emit, cancel) -> None:
        raise NotImplementedError

    def stream_body(self, first: Any, items: AsyncIterator[Any]) -> StreamingResponse:
        raise NotImplementedError

    def add_routes(self, app: FastAPI) -> None:
        """The predictor's own routes besides inference (TTS: the voice library)."""

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


async def read_body(request: Request) -> bytearray:
    """The whole body in one buffer (sized from Content-Length when given): no chunk list, no join."""
    try:
        return await _read_body(request)
    except ClientDisconnect:
        raise ClientGone from None


async def _read_body(request: Request) -> bytearray:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        buffer, filled = bytearray(int(declared)), 0
        async for chunk in request.stream():
            end = filled + len(chunk)
            if end > len(buffer):
                raise BadRequest("the body is longer than its Content-Length")
            buffer[filled:end] = chunk
            filled = end
        if filled != len(buffer):
            raise ClientGone
        return buffer
    buffer = bytearray()
    async for chunk in request.stream():
        buffer += chunk
    return buffer


async def read_v2(request: Request, label: str) -> v2wire.InferRequest:
    body = await read_body(request)
    try:
        return v2wire.parse_request(body, request.headers.get(v2wire.HEADER_LENGTH))
    except v2wire.WireError as exc:
        raise BadRequest(f"{label} backend: {exc}", code="malformed_request") from exc


async def parse(request: Request, predictor: LazyPredictor) -> Any:
    return predictor.prepare(await read_v2(request, predictor.label))


async def admitted(
    request: Request,
    predictor: LazyPredictor,
    prepare: Callable[[], Awaitable[J]],
    work: Callable[[J, threading.Event], T],
) -> T:
    """A place in the admission queue (429 when full), the request parsed and checked (``prepare``),
    then ``work`` in a worker thread that is told to stop when the client leaves (``ClientGone``)."""
    ticket = predictor.admission.admit()
    watch, handed = None, False
    try:
        job = await prepare()
        watch, handed = ClientWatch(request.receive), True
        with predictor.mapped_errors():
            return await run_in_worker(
                lambda cancel: work(job, cancel), ticket, watch, predictor.metrics.work_stopped.inc
            )
    finally:
        if not handed:
            ticket.done()
        if watch is not None:
            watch.close()


def add_routes(app: FastAPI, predictor: LazyPredictor, drain: Drain) -> None:
    name, metrics = predictor.name, predictor.metrics

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}  # liveness of the HTTP service; models load lazily

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/status", include_in_schema=False)
    async def status() -> dict:
        return predictor.status()

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/models", include_in_schema=False)
    async def models() -> dict:
        return {"object": "list", "data": predictor.public_models()}

    @app.post(f"/v2/models/{name}/infer", include_in_schema=False)
    async def infer(request: Request) -> Response:
        try:
            outputs = await admitted(request, predictor, lambda: parse(request, predictor), predictor.run)
        except ClientGone:
            metrics.cancelled.labels("infer").inc()
            return Response(status_code=499)
        body, headers = v2wire.encode_response(request.headers.get("x-request-id", ""), name, outputs)
        return Response(body, headers=headers)

    @app.post(f"/v2/models/{name}/infer_stream", include_in_schema=False)
    async def infer_stream(request: Request) -> Response:
        ticket = predictor.admission.admit()
        try:
            job = await parse(request, predictor)
        except BaseException:
            ticket.done()
            raise
        watch = ClientWatch(request.receive)
        items = stream_from_worker(
            lambda emit, cancel: predictor.produce(job, emit, cancel), ticket, watch, metrics.work_stopped.inc
        )
        try:
            with predictor.mapped_errors():
                first = await anext(items)  # a failure before the first item is still an HTTP error
        except StopAsyncIteration:
            watch.close()
            raise InternalError(f"{predictor.label} backend produced nothing") from None
        except ClientGone:
            metrics.cancelled.labels("infer_stream").inc()
            watch.close()
            return Response(status_code=499)
        except BaseException:
            watch.close()
            raise
        return predictor.stream_body(
            first, _closing(items, watch, lambda: metrics.cancelled.labels("infer_stream").inc())
        )

    predictor.add_routes(app)


async def _closing(
    items: AsyncGenerator[Any, None], watch: ClientWatch, on_cancel: Callable[[], None]
) -> AsyncIterator[Any]:
    finished = False
    try:
        async for item in items:
            yield item
        finished = True
    except ClientGone:
        pass
    finally:
        if not finished and watch.cancel.is_set():
            on_cancel()
        watch.close()
        await items.aclose()


class TokenAuth:
    """With a token configured, everything but the open paths needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = (header(scope, b"authorization") or "").encode("latin-1")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(value.strip(), self.token):
            await self.app(scope, receive, send)
            return
        await send_error(send, Unauthorized("a valid predictor token is required", code="invalid_token"))


def install(app: FastAPI, predictor: LazyPredictor, settings: PredictorSettings, drain: Drain) -> None:
    """Our routes first (so ours answer /infer), error rendering, and the guards around the app."""
    add_routes(app, predictor, drain)  # before KServe registers its own /infer: the first match wins

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> Response:
        if exc.status == 429:
            predictor.metrics.rejected.labels("overloaded").inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    def observe(record: RequestRecord) -> None:
        if "/infer" in record.route:
            route = record.route.rsplit("/", 1)[-1]
            predictor.metrics.requests.labels(route, str(record.status)).inc()
            predictor.metrics.duration.labels(route).observe(record.seconds)
            predictor.metrics.bytes_in.inc(record.bytes_in)
            predictor.metrics.bytes_out.inc(record.bytes_out)
            if record.status == 503 and drain.draining:
                predictor.metrics.rejected.labels("draining").inc()
        if "/infer" in record.route or record.status >= 500:
            log.info("%s %s %d %.3f s", record.method, record.path, record.status, record.seconds)

    app.add_middleware(BodyLimit, limit_for=predictor.body_limit)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    app.add_middleware(TokenAuth, token=token)
    app.add_middleware(DrainGate, drain=drain)
    app.add_middleware(RequestContext, on_complete=observe)


class PredictorServer(ModelServer):
    def __init__(self, settings: PredictorSettings) -> None:
        super().__init__(http_port=settings.http_port, enable_grpc=False, workers=1)
        self.settings = settings

    def serve(self, predictor: LazyPredictor) -> None:
        self._register_and_check_atleast_one_model_is_ready([predictor])
        drain = Drain(f"{predictor.label} backend", self.settings.shutdown_grace_seconds, exempt=OPEN_PATHS)
        install(kserve_app, predictor, self.settings, drain)
        rest = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port)
        rest.create_application()  # KServe's own v1/v2 routes and handlers, after ours
        config = uvicorn.Config(
            kserve_app,
            host=self.settings.host,
            port=self.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=self.settings.keep_alive_seconds,
        )
        DrainingServer(config, drain).run()


def main(
    tag: str,
    settings_class: type[PredictorSettings],
    engine_class,
    predictor_class,
    metrics_class: type[PredictorMetrics] = PredictorMetrics,
) -> None:
    """``python -m services.<tag>``: settings -> engine -> predictor -> server."""
    settings = settings_class()
    logs.configure(tag, settings.log_format)
    # KServe's own app uses FastAPI's deprecated ORJSONResponse: one warning per request otherwise.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    metrics = metrics_class(tag)
    predictor = predictor_class(settings.model_name, engine_class(settings, metrics), settings, metrics)
    predictor.load()
    started = time.perf_counter()
    log.info(
        "serving %s on %s:%d (max_active=%d, max_queue=%d)",
        tag,
        settings.host,
        settings.http_port,
        settings.max_active,
        settings.max_queue,
    )
    PredictorServer(settings).serve(predictor)
    log.info("stopped after %.0f s", time.perf_counter() - started)
