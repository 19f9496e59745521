"""Start a custom KServe predictor: KServe's own REST server and routes, plus what we need.

Two departures from a plain ``kserve.ModelServer().start([model])``, both kept small:
- ``BinaryDataPlane``: KServe 0.21 decodes a binary-extension tensor into Python lists (and a
  ``BYTES`` tensor into UTF-8 strings, which fails on audio). Ours keeps each binary input as the
  raw bytes slice, so an upload crosses the predictor without a copy per sample.
- the listening host is a setting (KServe hard-codes 0.0.0.0; local runs and tests use loopback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from fastapi import Request, Response
from kserve import Model, ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model_server import app as kserve_app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.server import RESTServer

from services.common.lifecycle import ModelLoadError
from services.common.v2wire import HEADER_LENGTH

log = logging.getLogger(__name__)


class BinaryDataPlane(DataPlane):
    """KServe's data plane, with binary inputs kept as raw bytes."""

    def decode_inference_request(self, body, headers, model_name):
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        return parse_binary_request(body, headers, model_name)


def parse_binary_request(body: bytes, headers, model_name: str) -> InferRequest:
    """A v2 request body (JSON, or JSON + binary tensors) -> InferRequest with raw binary inputs."""
    try:
        json_len = int(headers.get(HEADER_LENGTH) or len(body))
        doc = json.loads(body[:json_len])
        return _request_from_header(doc, body, json_len, model_name)
    except (KeyError, ValueError, TypeError, struct.error) as exc:
        raise InvalidInput(f"malformed v2 request: {exc}") from exc


def _request_from_header(doc: dict, body: bytes, offset: int, model_name: str) -> InferRequest:
    inputs = []
    for spec in doc["inputs"]:
        params = spec.get("parameters") or {}
        tensor = InferInput(spec["name"], spec["shape"], spec["datatype"], parameters=params)
        if "binary_data_size" in params:
            size = int(params["binary_data_size"])
            if offset + size > len(body):
                raise ValueError(f"input '{spec['name']}' is truncated")
            tensor._raw_data = body[offset:offset + size]
            offset += size
        else:
            tensor.data = spec.get("data")
        inputs.append(tensor)
    outputs = [RequestedOutput(o["name"], o.get("parameters")) for o in doc.get("outputs") or []]
    return InferRequest(model_name, inputs, request_id=doc.get("id"), parameters=doc.get("parameters"),
                        request_outputs=outputs or None)


def raw_bytes_element(tensor: InferInput) -> bytes:
    """The single element of a binary BYTES tensor, without its 4-byte length prefix."""
    raw = tensor._raw_data
    if raw is None:
        raise InvalidInput(f"input '{tensor.name}' must use the binary data extension")
    if len(raw) < 4:
        raise InvalidInput(f"input '{tensor.name}' is empty")
    (length,) = struct.unpack_from("<I", raw)
    if length != len(raw) - 4:
        raise InvalidInput(f"input '{tensor.name}' is truncated ({len(raw) - 4} of {length} bytes)")
    return raw[4:]


class PredictorServer(ModelServer):
    def __init__(self, host: str, http_port: int, **kwargs) -> None:
        super().__init__(http_port=http_port, enable_grpc=False, workers=1, **kwargs)
        self.host = host
        self.dataplane = BinaryDataPlane(model_registry=self.registered_models)

    def start(self, models: list[Model]) -> None:
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, access_log_format=self.access_log_format, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive)
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


class LazyPredictor(Model):
    """A predictor whose model loads lazily on the first request: KServe's "ready" only means
    "accepting requests". Model work runs in threads, at most ``max_concurrency`` at once."""

    client_errors: tuple[type[Exception], ...] = ()  # the engine's exceptions that are the client's fault

    def __init__(self, name: str, engine, max_concurrency: int) -> None:
        super().__init__(name)
        self.engine = engine
        self._slots = asyncio.Semaphore(max_concurrency)

    @contextmanager
    def kserve_errors(self) -> Iterator[None]:
        """Engine exceptions -> KServe's: 400 for the client's fault, 503 when a model cannot load."""
        try:
            yield
        except self.client_errors as exc:
            raise InvalidInput(str(exc)) from exc
        except ModelLoadError as exc:
            raise ModelNotReady(self.name, str(exc)) from exc

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def status(self) -> dict:
        """Model lifetimes for ``GET /status``."""
        raise NotImplementedError

    async def stream_response(self, payload: InferRequest) -> Response:
        """The answer of ``POST /v2/models/<name>/infer_stream`` (KServe has no streaming route for audio)."""
        raise NotImplementedError


async def split_first(items: AsyncIterator) -> tuple[object, AsyncIterator]:
    """Wait for the first item, so that a failure before it is still an HTTP error, not a cut stream."""
    first = await anext(items)

    async def rest() -> AsyncIterator:
        yield first
        async for item in items:
            yield item
    return first, rest()


def serve(predictor: LazyPredictor, host: str, port: int) -> None:
    """Register our routes next to KServe's and serve the predictor."""
    # KServe's own app uses FastAPI's deprecated ORJSONResponse: one warning per request otherwise.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")

    @kserve_app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        # Liveness of the HTTP service only: the model itself loads lazily on first use.
        return {"status": "ok"}

    @kserve_app.get("/status", include_in_schema=False)
    async def status() -> dict:
        return predictor.status()

    @kserve_app.post(f"/v2/models/{predictor.name}/infer_stream", include_in_schema=False)
    async def infer_stream(request: Request) -> Response:
        payload = parse_binary_request(await request.body(), request.headers, predictor.name)
        return await predictor.stream_response(payload)

    predictor.load()
    PredictorServer(host, port).start([predictor])


def main(tag: str, settings_class, engine_class, predictor_class) -> None:
    """``python -m services.<tag>``: settings -> engine -> predictor -> KServe ModelServer."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s")
    settings = settings_class()
    predictor = predictor_class(settings.model_name, engine_class(settings), settings.max_concurrency)
    serve(predictor, settings.host, settings.http_port)
