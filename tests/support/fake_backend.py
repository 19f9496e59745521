"""A fault-injecting stand-in for a predictor (the only fake in the suite): it answers KServe's
infer route with a scripted failure so the gateway's error mapping can be checked."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
import numpy as np
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class FaultyBackend:
    def __init__(self, port: int) -> None:
        self.mode = "503"
        self.port = port
        app = Starlette(routes=[Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
                                Route("/v2/models/{name}/infer_stream", self.infer, methods=["POST"]),
                                Route("/healthz", lambda r: JSONResponse({"status": "ok"}))])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def infer(self, request: Request) -> Response:
        await request.body()
        if self.mode == "503":
            return JSONResponse({"error": "Model with name tts is not ready. loading"}, status_code=503)
        if self.mode == "500":
            return JSONResponse({"error": "RuntimeError : CUDA out of memory"}, status_code=500)
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "cut":  # a stream that starts, then breaks off mid-way
            return StreamingResponse(self._cut(), headers={"x-sample-rate": "16000"})
        return Response(b"not json", status_code=200)

    @staticmethod
    async def _cut():
        yield np.zeros(4000, "<f4").tobytes()
        await asyncio.sleep(0.1)
        raise RuntimeError("predictor crashed mid-stream")

    def __enter__(self) -> "FaultyBackend":
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
