"""Serve a predictor: a plain FastAPI app speaking the Open Inference Protocol v2 REST routes
(``predictor_routes``), the service's guards around it, and uvicorn with a drain on SIGTERM.

KServe is used for what it gives a custom predictor: the InferenceService CRD and its controller,
which run this container, give it a Service and probe it. The container itself does not run
KServe's Python model server (why: README, "Predictors and KServe").

Around the routes, outermost first: request id and error envelope (``RequestContext``), drain gate
(503 while shutting down), shared-token check, body limit (413 while reading).
"""

from __future__ import annotations

import logging
import secrets
import time

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common import logs
from services.common.admission import ADMISSION_HEADER, Admission
from services.common.asgi import BodyLimit, RequestContext, RequestRecord, deny_websocket, header, send_error
from services.common.draining import Drain, DrainGate, serve
from services.common.errors import BadRequest, ServiceError, Unauthorized, route_error
from services.common.owner import OwnerContext
from services.common.predictor import LazyPredictor
from services.common.predictor_metrics import PredictorMetrics
from services.common.predictor_routes import add_inference, add_operations
from services.common.predictor_settings import PredictorSettings

log = logging.getLogger(__name__)
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")


class TokenAuth:
    """With a token configured, everything but the open paths needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = (header(scope, b"authorization") or "").encode("latin-1")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(value.strip(), self.token):
            await self.app(scope, receive, send)
            return
        refusal = Unauthorized("a valid predictor token is required", code="invalid_token")
        if scope["type"] == "websocket":
            await deny_websocket(scope, send, refusal)
        else:
            await send_error(send, refusal)


class AdmissionHeader:
    """Every answer carries the predictor's admission state at the moment it starts
    (``ADMISSION_HEADER``): a gateway learns each replica's load from the answers it gets anyway."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_state(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = self.admission.state().header().encode()
                message["headers"] = [*message.get("headers", []), (ADMISSION_HEADER.encode(), state)]
            await send(message)

        await self.app(scope, receive, with_state)


def create_app(predictor: LazyPredictor, settings: PredictorSettings, drain: Drain) -> FastAPI:
    app = FastAPI(title=f"speech-stack {predictor.label} predictor", docs_url=None, redoc_url=None, openapi_url=None)
    add_operations(app, predictor, drain)
    add_inference(app, predictor, drain)
    predictor.add_routes(app, drain)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> Response:
        if exc.status == 429:
            predictor.metrics.rejected.labels("overloaded").inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        err = BadRequest(f"{predictor.label} backend: malformed request", code="malformed_request")
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err = route_error(exc.status_code, request.method, request.url.path, exc.headers)
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

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
    app.add_middleware(OwnerContext)
    app.add_middleware(DrainGate, drain=drain)
    app.add_middleware(AdmissionHeader, admission=predictor.admission)
    app.add_middleware(RequestContext, on_complete=observe)
    return app


def main(
    tag: str,
    settings_class: type[PredictorSettings],
    engine_class: type,
    predictor_class: type[LazyPredictor],
    metrics_class: type[PredictorMetrics] = PredictorMetrics,
) -> None:
    """``python -m services.<tag>``: settings -> engine -> predictor -> app -> server."""
    settings = settings_class()
    logs.configure(tag, settings.log_format)
    metrics = metrics_class(tag)
    predictor = predictor_class(settings.model_name, engine_class(settings, metrics), settings, metrics)
    started = time.perf_counter()
    log.info(
        "serving %s on %s:%d (max_active=%d, max_queue=%d)",
        tag,
        settings.host,
        settings.http_port,
        settings.max_active,
        settings.max_queue,
    )
    drain = Drain(f"{predictor.label} backend", settings.shutdown_grace_seconds, exempt=OPEN_PATHS)
    serve(
        create_app(predictor, settings, drain),
        drain,
        settings.host,
        settings.http_port,
        keep_alive=settings.keep_alive_seconds,
    )
    log.info("stopped after %.0f s", time.perf_counter() - started)
