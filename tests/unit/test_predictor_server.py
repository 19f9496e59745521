"""The predictors' shared server (``services.common.predictor_server``) around a stand-in predictor whose
work waits for the test: the v2 routes, admission over a real socket, errors as OpenAI's envelope."""

from __future__ import annotations

import socket
import threading
import time
import types
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from fastapi.responses import StreamingResponse

from scripts.devstack import free_port
from services.common import v2wire
from services.common.draining import Drain
from services.common.predictor import LazyPredictor, TensorSpec
from services.common.predictor_metrics import PredictorMetrics
from services.common.predictor_server import OPEN_PATHS, create_app
from services.common.predictor_settings import PredictorSettings


class Echo(LazyPredictor):
    """Echoes its text once ``gate`` opens."""

    label = "ECHO"
    inputs = (TensorSpec("text", "BYTES", (1,)),)
    outputs = (TensorSpec("text", "BYTES", (1,)),)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.gate, self.started = threading.Event(), threading.Event()
        self.prepared_on: list[str] = []

    def public_models(self) -> list[str]:
        return ["echo-1"]

    def models_status(self) -> dict:
        return {"model": {"loaded": True}}

    def prepare(self, request: v2wire.InferRequest) -> bytes:
        self.prepared_on.append(threading.current_thread().name)
        (raw,) = request.tensor("text").elements()
        return bytes(raw)

    def run(self, job: bytes, cancel: threading.Event) -> list[v2wire.BinaryOutput]:
        self.started.set()
        self.gate.wait(30)
        return [v2wire.BinaryOutput("text", "BYTES", [1], v2wire.element_prefix(len(job)) + job)]

    def produce(self, job: bytes, emit, cancel: threading.Event) -> None:
        emit(job)

    def stream_body(self, first: bytes, items: AsyncIterator[bytes]) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield first
            async for item in items:
                yield item

        return StreamingResponse(body())


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    settings = PredictorSettings(model_name="echo", max_active=1, max_queue=0, retry_after_seconds=3)
    predictor = Echo("echo", types.SimpleNamespace(), settings, PredictorMetrics("echo"))
    app = create_app(predictor, settings, Drain("ECHO backend", 5, exempt=OPEN_PATHS))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield predictor, f"http://127.0.0.1:{server.config.port}"
    predictor.gate.set()
    server.should_exit = True
    thread.join(10)


def v2_body(text: bytes) -> tuple[bytes, dict[str, str]]:
    header = v2wire.InferRequestHeader("rid")
    header.binary_inputs = [v2wire.BinaryInput.bytes_elements("text", [len(text)])]
    head = header.encode()
    return head + v2wire.element_prefix(len(text)) + text, v2wire.request_headers(head, header.body_length(head))


def test_infer_answers_binary_v2_and_prepares_off_the_event_loop(echo):
    predictor, url = echo
    predictor.gate.set()
    body, headers = v2_body(b"hello")
    r = httpx.post(f"{url}/v2/models/echo/infer", content=body, headers=headers)
    out = v2wire.decode_response(r.content, r.headers)["text"]
    assert r.status_code == 200 and out.raw == v2wire.element_prefix(5) + b"hello"
    assert predictor.prepared_on and predictor.prepared_on[0] != "MainThread"  # a worker thread, not the loop


def test_the_v2_health_and_metadata_routes(echo):
    _, url = echo
    assert httpx.get(f"{url}/v2/health/live").json()["live"] is True
    assert httpx.get(f"{url}/v2/health/ready").json()["ready"] is True
    assert httpx.get(f"{url}/v2/models/echo/ready").json() == {"name": "echo", "ready": True}
    meta = httpx.get(f"{url}/v2/models/echo").json()
    assert meta["name"] == "echo" and meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [1]}]
    missing = httpx.get(f"{url}/v2/models/other")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_unknown_routes_and_methods_answer_in_openais_envelope(echo):
    _, url = echo
    r = httpx.post(f"{url}/v2/models/echo/nothing")
    assert r.status_code == 404 and r.json()["error"]["message"] == "Invalid URL (POST /v2/models/echo/nothing)"
    r = httpx.get(f"{url}/v2/models/echo/infer")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"]["code"] == "method_not_allowed"


def test_a_full_predictor_reads_a_large_upload_before_its_429(echo):
    """Admission refuses before reading the body, then reads and drops the body before answering: a
    server that answers with megabytes unread closes the connection (HTTP implementations that do not
    drain it themselves), and the kernel's reset can destroy the 429 on its way to the gateway."""
    predictor, url = echo
    body, headers = v2_body(b"first")
    holder = threading.Thread(target=lambda: httpx.post(f"{url}/v2/models/echo/infer", content=body, headers=headers))
    holder.start()
    assert predictor.started.wait(10)  # the only place is taken, the queue holds none
    read_before = metric(url, "speech_echo_request_bytes_total")
    big, big_headers = v2_body(b"x" * (40 << 20))
    r = httpx.post(f"{url}/v2/models/echo/infer", content=big, headers=big_headers, timeout=60)
    assert r.status_code == 429 and r.headers["retry-after"] == "3" and r.json()["error"]["type"] == "rate_limit_error"
    assert metric(url, "speech_echo_request_bytes_total") - read_before == len(big)  # read by the service itself
    predictor.gate.set()
    holder.join(10)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_a_client_leaving_during_a_streamed_upload_is_a_cancellation_not_an_error(echo):
    predictor, url = echo
    body, headers = v2_body(b"x" * 100_000)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /v2/models/echo/infer_stream HTTP/1.1\r\nhost: x\r\n{head}\r\n".encode() + body[:1000])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{url}/metrics").text
        if 'speech_echo_cancelled_total{route="infer_stream"} 1.0' in metrics:
            break
        time.sleep(0.05)
    assert 'speech_echo_cancelled_total{route="infer_stream"} 1.0' in metrics
    assert 'status="500"' not in metrics
    assert predictor.admission.admitted == 0


def test_every_answer_carries_the_admission_state(echo):
    """A gateway learns each replica's load from the answers it gets anyway (replica-aware routing)."""
    from services.common.admission import ADMISSION_HEADER, AdmissionState

    predictor, url = echo
    body, headers = v2_body(b"first")
    holder = threading.Thread(target=lambda: httpx.post(f"{url}/v2/models/echo/infer", content=body, headers=headers))
    holder.start()
    assert predictor.started.wait(10)
    busy = httpx.post(f"{url}/v2/models/echo/infer", content=body, headers=headers)
    assert busy.status_code == 429
    state = AdmissionState.parse(busy.headers[ADMISSION_HEADER])
    assert state == AdmissionState(active=1, waiting=0, max_active=1, max_queue=0) and state.full
    predictor.gate.set()
    holder.join(10)
    idle = AdmissionState.parse(httpx.get(f"{url}/healthz").headers[ADMISSION_HEADER])
    assert idle is not None and idle.load == 0 and not idle.full
    assert AdmissionState.parse("nonsense") is None and AdmissionState.parse(None) is None
