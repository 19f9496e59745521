"""A predictor stand-in at the HTTP boundary (``httpx.MockTransport``) for in-process gateway tests:
it reads the v2 request the gateway sends and answers from a script."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from services.common import v2wire

RESULT = {
    "task": "transcribe",
    "language": "en",
    "language_name": "english",
    "duration": 2.5,
    "text": "Hello there.",
    "segments": [
        {
            "id": 0,
            "seek": 0,
            "start": 0.0,
            "end": 2.5,
            "text": " Hello there.",
            "tokens": [1, 2],
            "temperature": 0.0,
            "avg_logprob": -0.2,
            "compression_ratio": 1.0,
            "no_speech_prob": 0.01,
        }
    ],
}


@dataclass
class Seen:
    path: str
    headers: httpx.Headers
    request: v2wire.InferRequest | None


@dataclass
class FakePredictor:
    kind: str  # "asr" or "tts"
    models: list[str]
    seen: list[Seen] = field(default_factory=list)
    answer: Callable[[httpx.Request], httpx.Response] | None = None  # overrides the happy path
    down: bool = False  # its readiness probe cannot connect

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _operations(self, request: httpx.Request) -> httpx.Response | None:
        """The model list and readiness (never scripted by ``answer``)."""
        if request.url.path == "/models":
            return httpx.Response(200, json={"object": "list", "data": self.models})
        if request.url.path != "/readyz":
            return None
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"status": "ready"})

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        path = request.url.path
        parsed = None
        if path.startswith("/v2/") or (path == "/voices" and request.method == "POST"):
            parsed = v2wire.parse_request(body, request.headers.get(v2wire.HEADER_LENGTH))
        self.seen.append(Seen(path, request.headers, parsed))
        if (answered := self._operations(request)) is not None:
            return answered
        if self.answer is not None:
            return self.answer(request)
        if path.startswith("/voices"):
            return _voices(request, parsed)
        streaming = path.endswith("/infer_stream")
        if self.kind == "asr":
            return _asr_stream() if streaming else _asr_result(parsed)
        return _pcm_stream() if streaming else _pcm_whole(parsed)


VOICES = [
    {"id": "Ana", "name": "Ana", "type": "builtin"},
    {"id": "alloy", "name": "alloy", "type": "alias", "maps_to": "Ana"},
]


def _voices(request: httpx.Request, parsed: v2wire.InferRequest | None) -> httpx.Response:
    """The TTS voice library routes: list, create (echoing the fields), delete."""
    if request.method == "GET":
        return httpx.Response(200, json={"object": "list", "data": VOICES})
    if request.method == "POST" and parsed is not None:
        return httpx.Response(
            200,
            json={
                "id": "voice_0123456789abcdef01234567",
                "created_at": 1700000000,
                "name": parsed.parameters["name"],
                "seconds": 4.0,
            },
        )
    return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1], "deleted": True})


def _asr_result(request: v2wire.InferRequest | None) -> httpx.Response:
    result: dict = RESULT
    if request is not None and request.parameters.get("task") == "align":  # words 0.1 s apart
        words = str(request.parameters["text"]).split()
        result = {"words": [{"word": w, "start": i / 10, "end": (i + 1) / 10} for i, w in enumerate(words)]}
    data = json.dumps(result).encode()
    body, headers = v2wire.encode_response(
        request.id if request else "",
        "asr",
        [v2wire.BinaryOutput("result", "BYTES", [1], v2wire.element_prefix(len(data)) + data)],
    )
    return httpx.Response(200, content=body, headers=headers)


def _asr_stream() -> httpx.Response:
    lines = [
        {"type": "text", "text": " Hello"},
        {"type": "text", "text": " there."},
        {"type": "result", "result": RESULT},
    ]
    return httpx.Response(
        200,
        content=b"".join(json.dumps(x).encode() + b"\n" for x in lines),
        headers={"content-type": "application/x-ndjson"},
    )


def _tone(seconds: float = 0.5, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype("<f4")


def _pcm_whole(request: v2wire.InferRequest | None) -> httpx.Response:
    samples = _tone()
    body, headers = v2wire.encode_response(
        request.id if request else "",
        "tts",
        [v2wire.BinaryOutput("audio", "FP32", [samples.size], samples.tobytes(), {"sample_rate": 22050})],
    )
    return httpx.Response(200, content=body, headers=headers)


def _pcm_stream() -> httpx.Response:
    return httpx.Response(200, content=_tone().tobytes(), headers={"x-sample-rate": "22050"})


def error(
    status: int, message: str, *, param: Any = None, code: Any = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def answer(_: httpx.Request) -> httpx.Response:
        body = {"error": {"message": message, "type": "x", "param": param, "code": code}}
        return httpx.Response(status, json=body, headers=headers)

    return answer
