"""The routes every predictor serves: operations (``/healthz``, ``/readyz``, ``/status``,
``/metrics``, ``/models``), the Open Inference Protocol v2 health and metadata routes, and inference
(``POST /v2/models/<name>/infer``, and the predictors' own ``/infer_stream``).

Per inference request, in order: admission (429 when full, decided before the body is read; the
body is then read and dropped, so the client sees the 429 and not a reset connection), the body read
within its limit, parse and validate once in a worker thread (400), wait for a place, model work in
a worker thread that stops when the client leaves, answer (binary v2 outputs, or a stream).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from services.common import v2wire
from services.common.admission import Ticket
from services.common.draining import Drain, discard_body
from services.common.errors import BadRequest, InternalError, NotFound, Overloaded, echo
from services.common.predictor import LazyPredictor
from services.common.work import ClientGone, ClientWatch, run_in_worker, stream_from_worker

J = TypeVar("J")
T = TypeVar("T")
CLIENT_CLOSED = 499  # nginx's code for a client that left: only ever logged, nobody reads it


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


async def admit(request: Request, predictor: LazyPredictor) -> Ticket:
    """A place in the queue, or a 429 sent only once the body is read (unread bytes left in the
    socket make the kernel reset the connection, and the client would lose the 429)."""
    try:
        return predictor.admission.admit()
    except Overloaded:
        await discard_body(request.receive)
        raise


async def parse(request: Request, predictor: LazyPredictor) -> Any:
    payload = await read_v2(request, predictor.label)
    return await asyncio.to_thread(predictor.prepare, payload)


async def admitted(
    request: Request,
    predictor: LazyPredictor,
    prepare: Callable[[], Awaitable[J]],
    work: Callable[[J, threading.Event], T],
) -> T:
    """A place in the admission queue (429 when full), the request parsed and checked (``prepare``),
    then ``work`` in a worker thread that is told to stop when the client leaves (``ClientGone``)."""
    ticket = await admit(request, predictor)
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


def add_operations(app: FastAPI, predictor: LazyPredictor, drain: Drain) -> None:
    """Liveness and readiness (also as v2's ``/v2/health/*``), status, metrics, the public models."""

    async def live() -> dict:
        return {"live": True, "status": "ok"}  # the HTTP service answers; models load lazily

    async def ready() -> Response:
        if drain.draining:
            return JSONResponse({"ready": False, "status": "draining"}, status_code=503)
        return JSONResponse({"ready": True, "status": "ready"})

    for path, endpoint in (
        ("/healthz", live),
        ("/v2/health/live", live),
        ("/readyz", ready),
        ("/v2/health/ready", ready),
    ):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)

    @app.get("/status", include_in_schema=False)
    async def status() -> dict:
        return predictor.status()

    @app.get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        return Response(generate_latest(predictor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/models", include_in_schema=False)
    async def models() -> dict:
        return {"object": "list", "data": predictor.public_models()}

    @app.get("/v2", include_in_schema=False)
    async def server_metadata() -> dict:
        return {"name": f"speech-stack-{predictor.label.lower()}", "version": "2", "extensions": ["binary_tensor_data"]}


def add_inference(app: FastAPI, predictor: LazyPredictor, drain: Drain) -> None:
    name, metrics = predictor.name, predictor.metrics

    def known(model: str) -> None:
        if model != name:
            raise NotFound(
                f"{predictor.label} backend: no model '{echo(model)}' (this server has '{name}')",
                param="model",
                code="model_not_found",
            )

    @app.get("/v2/models/{model}", include_in_schema=False)
    async def model_metadata(model: str) -> dict:
        known(model)
        return predictor.model_metadata()

    @app.get("/v2/models/{model}/ready", include_in_schema=False)
    async def model_ready(model: str) -> Response:
        known(model)  # models load on the first request: ready means accepting requests
        return JSONResponse({"name": name, "ready": not drain.draining}, status_code=503 if drain.draining else 200)

    @app.post(f"/v2/models/{name}/infer", include_in_schema=False)
    async def infer(request: Request) -> Response:
        try:
            outputs = await admitted(request, predictor, lambda: parse(request, predictor), predictor.run)
        except ClientGone:
            metrics.cancelled.labels("infer").inc()
            return Response(status_code=CLIENT_CLOSED)
        body, headers = v2wire.encode_response(request.headers.get("x-request-id", ""), name, outputs)
        return Response(body, headers=headers)

    @app.post(f"/v2/models/{name}/infer_stream", include_in_schema=False)
    async def infer_stream(request: Request) -> Response:
        ticket = await admit(request, predictor)
        try:
            job = await parse(request, predictor)
        except ClientGone:
            ticket.done()
            metrics.cancelled.labels("infer_stream").inc()
            return Response(status_code=CLIENT_CLOSED)
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
            return Response(status_code=CLIENT_CLOSED)
        except BaseException:
            watch.close()
            raise
        return predictor.stream_body(
            first, _closing(items, watch, lambda: metrics.cancelled.labels("infer_stream").inc())
        )


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
