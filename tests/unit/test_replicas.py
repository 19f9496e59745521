"""Replica-aware routing in process: two predictor replicas at the HTTP boundary (``httpx.MockTransport``
answering per host), the gateway's ``Backend`` choosing between them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import httpx
import pytest

from services.common.admission import ADMISSION_HEADER, AdmissionState
from services.gateway.backends import Backend
from services.gateway.errors import BackendBusy, BackendFailed, BackendUnavailable
from services.gateway.replicas import Replica, ReplicaSet
from services.gateway.settings import GatewaySettings

R1, R2 = "http://10.0.0.1:8080", "http://10.0.0.2:8080"


def state(active: int, waiting: int = 0, max_active: int = 4, max_queue: int = 8) -> dict[str, str]:
    return {ADMISSION_HEADER: AdmissionState(active, waiting, max_active, max_queue).header()}


def report(replica: Replica, active: int, waiting: int) -> None:
    """What the replica said of itself in an answer (its admission header)."""
    replica.observe(httpx.Response(200, headers=state(active, waiting)))


def refusal(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"message": "no", "type": "server_error", "param": None, "code": code}}
    return httpx.Response(status, content=json.dumps(body), headers=headers)


class Replicas:
    """Two replicas: each answers with its scripted function (default: 200 with its load)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.answer: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.rerouted: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        self.seen.append(origin)
        if origin in self.answer:
            return self.answer[origin](request)
        return httpx.Response(200, json={"served_by": origin}, headers=state(1))

    def backend(self) -> Backend:
        backend = Backend(
            "ASR", R1, "asr", token=None, settings=GatewaySettings(), transport=httpx.MockTransport(self.handle),
            discovery="http://replicas.invalid:8080", on_reroute=lambda *a: self.rerouted.append(a),
        )  # fmt: skip
        backend.replicas.replicas = {R1: Replica(R1), R2: Replica(R2)}
        return backend


def post(backend: Backend) -> httpx.Response:
    async def go() -> httpx.Response:
        try:
            return await backend.post("/v2/models/asr/infer", lambda: b"{}", {})
        finally:
            await backend.close()

    return asyncio.run(go())


def test_the_least_loaded_replica_gets_the_request():
    replicas = Replicas()
    backend = replicas.backend()
    report(backend.replicas.replicas[R1], 4, 3)  # full of work
    report(backend.replicas.replicas[R2], 1, 0)
    assert post(backend).json()["served_by"] == R2


def test_requests_sent_since_a_report_count_as_load():
    rs = ReplicaSet("ASR", R1)
    rs.replicas = {R1: Replica(R1, AdmissionState(0, 0, 1, 0)), R2: Replica(R2, AdmissionState(0, 0, 1, 0))}
    chosen = [rs.choose(set()) for _ in range(4)]  # no answers in between: spread by what was sent
    assert sorted(r.url for r in chosen if r) == [R1, R1, R2, R2]


def test_a_report_made_before_a_request_arrived_does_not_forget_it():
    """Eight places in all (two replicas of 1 working + 3 queued) and eight callers that send again as
    soon as they are answered: a report written before the latest request reached the replica must not
    make the gateway send a fifth request there."""
    rs = ReplicaSet("ASR", R1)
    rs.replicas = {R1: Replica(R1), R2: Replica(R2)}
    for replica in rs.replicas.values():  # idle, one place to work and three to wait each
        replica.observe(httpx.Response(200, headers=state(0, 0, max_active=1, max_queue=3)))
    held = [rs.choose(set()) for _ in range(8)]
    assert all(r is not None for r in held)
    r1, r2 = rs.replicas[R1], rs.replicas[R2]
    assert r1.outstanding == r2.outstanding == 4
    # R1 answers one request; its report was written before two of ours had arrived (1 working): ...
    r1.observe(httpx.Response(200, headers=state(1, 0, max_active=1, max_queue=3)))
    r1.finished()
    assert (r1.outstanding, r1.others) == (3, 0)
    assert rs.choose(set()) is r1  # ... the freed place is R1's
    # R2 answers one too (its report exact): its freed place is the only one left
    r2.observe(httpx.Response(200, headers=state(1, 2, max_active=1, max_queue=3)))
    r2.finished()
    assert rs.choose(set()) is r2  # (counting R1 by its report, 1 + 1 sent since, would pick R1: a 429)
    assert r1.outstanding == r2.outstanding == 4


def test_other_gateways_requests_count_from_the_replicas_report():
    replica = Replica(R1)
    replica.outstanding = 1
    replica.observe(httpx.Response(200, headers=state(3, 2)))
    assert replica.others == 4 and replica.score() == (1 + 4) / 4


def test_every_request_is_finished_on_its_replica_whatever_the_answer():
    replicas = Replicas()
    replicas.answer[R1] = lambda _: refusal(429, "server_busy", **{"Retry-After": "1"})
    backend = replicas.backend()
    post(backend)  # refused by R1 and answered by R2 (or answered by R2 at once)
    replicas.answer[R2] = lambda _: refusal(500, "backend_failed")
    with contextlib.suppress(Exception):
        post(backend)
    assert [r.outstanding for r in backend.replicas.replicas.values()] == [0, 0]


def test_a_full_replica_is_passed_over_and_the_client_never_sees_its_429():
    replicas = Replicas()
    replicas.answer[R1] = lambda _: refusal(429, "server_busy", **{"Retry-After": "3"}, **state(4, 8))
    backend = replicas.backend()
    report(backend.replicas.replicas[R2], 3, 0)  # busier on paper: R1 is tried first
    response = post(backend)
    assert response.status_code == 200 and response.json()["served_by"] == R2
    assert replicas.seen == [R1, R2] and replicas.rerouted == [("ASR", "busy")]
    assert backend.replicas.replicas[R1].reason == "busy"  # and avoided for its Retry-After


def test_when_every_replica_is_full_the_client_gets_the_429():
    replicas = Replicas()
    for origin in (R1, R2):
        replicas.answer[origin] = lambda _: refusal(429, "server_busy", **{"Retry-After": "2"})
    with pytest.raises(BackendBusy) as err:
        post(replicas.backend())
    assert err.value.status == 429 and err.value.headers["retry-after"] == "2" and len(replicas.seen) == 2


def test_a_draining_replica_is_passed_over():
    replicas = Replicas()
    replicas.answer[R1] = lambda _: refusal(503, "shutting_down", **{"Retry-After": "1"})
    backend = replicas.backend()
    report(backend.replicas.replicas[R2], 3, 0)
    assert post(backend).json()["served_by"] == R2 and replicas.rerouted == [("ASR", "draining")]


def test_a_model_that_cannot_load_is_the_answer_not_a_reason_to_move_on():
    replicas = Replicas()
    replicas.answer[R1] = lambda _: refusal(503, "model_unavailable")
    backend = replicas.backend()
    report(backend.replicas.replicas[R2], 3, 0)
    with pytest.raises(BackendUnavailable) as err:
        post(backend)
    assert err.value.code == "model_unavailable" and replicas.seen == [R1]


def test_an_unreachable_replica_is_passed_over():
    replicas = Replicas()

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    replicas.answer[R1] = refused
    backend = replicas.backend()
    report(backend.replicas.replicas[R2], 3, 0)
    assert post(backend).json()["served_by"] == R2 and backend.replicas.replicas[R1].reason == "unreachable"


def test_a_post_that_broke_off_on_one_replica_is_not_sent_to_another():
    replicas = Replicas()

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    replicas.answer[R1] = broken
    backend = replicas.backend()
    report(backend.replicas.replicas[R2], 3, 0)
    with pytest.raises(BackendFailed):
        post(backend)
    assert replicas.seen == [R1]


def test_discovery_takes_every_address_of_the_name_and_keeps_what_it_knew():
    async def go() -> list[str]:
        rs = ReplicaSet("ASR", "http://asr-predictor", discovery="http://localhost:8080")
        await rs.discover()
        return sorted(rs.replicas)

    assert "http://127.0.0.1:8080" in asyncio.run(go())


def test_a_replica_that_says_it_drains_on_its_readiness_route_is_avoided():
    async def go() -> ReplicaSet:
        rs = ReplicaSet("ASR", R1)
        rs.replicas = {R1: Replica(R1), R2: Replica(R2)}

        def ready(request: httpx.Request) -> httpx.Response:
            draining = request.url.host == "10.0.0.1"
            return httpx.Response(503 if draining else 200, headers=state(0 if draining else 2))

        async with httpx.AsyncClient(transport=httpx.MockTransport(ready)) as client:
            await rs.poll(client)
        return rs

    rs = asyncio.run(go())
    assert rs.replicas[R1].reason == "draining" and rs.replicas[R2].state == AdmissionState(2, 0, 4, 8)
    assert rs.choose(set()) is rs.replicas[R2]
