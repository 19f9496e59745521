"""A fault-injecting stand-in for a TTS predictor (the only fake in the real-server suite): a real
uvicorn server on loopback that answers KServe's routes with a scripted failure, so the gateway's
error mapping and connection handling can be checked over real sockets. Its routes sit in the
predictors' own error middleware (``RequestContext``), so an exception in a route ends as it does in a
predictor: an OpenAI-shaped 500, the connection kept open."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.common import v2wire
from services.common.asgi import RequestContext


def _error(status: int, message: str, headers: dict[str, str] | None = None, **fields) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "x", "param": None, "code": None, **fields}},
        status_code=status,
        headers=headers,
    )


class FaultyBackend:
    def __init__(self, port: int) -> None:
        self.mode = "ok"  # or: alternate, crash, slow, cut
        self.port = port
        self.calls = 0
        app = Starlette(
            routes=[
                Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
                Route("/v2/models/{name}/infer_stream", self.infer, methods=["POST"]),
                Route("/models", lambda r: JSONResponse({"data": ["tts-1"]})),
                Route("/healthz", lambda r: JSONResponse({"status": "ok"})),
            ]
        )
        app.add_middleware(RequestContext)  # as services/common/predictor_server.py adds it
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def infer(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        mode = self.mode
        if mode == "alternate":  # a crash, then a good answer
            mode = "crash" if self.calls % 2 else "ok"
        if mode == "crash":
            raise RuntimeError("predictor crashed on this request")
        if mode == "ok":
            return _pcm(request.url.path.endswith("_stream"))
        return await self._scripted(mode)

    async def _scripted(self, mode: str) -> Response:
        if mode == "slow":
            await asyncio.sleep(5)
        if mode == "cut":  # a stream that starts, then breaks off mid-way
            return StreamingResponse(self._cut(), headers={"x-sample-rate": "16000"})
        return _error(503, "TTS backend unavailable", {"Retry-After": "2"}, code="model_unavailable")

    @staticmethod
    async def _cut():
        yield np.zeros(4000, "<f4").tobytes()
        await asyncio.sleep(0.1)
        raise RuntimeError("predictor crashed mid-stream")

    def __enter__(self) -> FaultyBackend:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _pcm(streaming: bool) -> Response:
    samples = (0.2 * np.sin(np.arange(8000) / 10)).astype("<f4")
    if streaming:
        return Response(samples.tobytes(), headers={"x-sample-rate": "16000"})
    body, headers = v2wire.encode_response(
        "id", "tts", [v2wire.BinaryOutput("audio", "FP32", [samples.size], samples.tobytes(), {"sample_rate": 16000})]
    )
    return Response(body, headers=headers)
