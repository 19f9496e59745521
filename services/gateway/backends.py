"""The two predictors as seen from the gateway: one pooled ``httpx.AsyncClient`` each, KServe v2
infer requests carrying the request id (header and v2 ``id``), and every transport or status failure
mapped to our errors here and only here. Public messages name the backend and the kind of failure;
the detail goes to the log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import websockets
from fastapi import UploadFile
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidHandshake, InvalidStatus

from services.common import v2wire
from services.common.errors import no_retry
from services.common.logs import REQUEST_ID
from services.common.owner import OWNER, OWNER_HEADER
from services.gateway.errors import (
    BackendBusy,
    BackendFailed,
    BackendTimeout,
    BackendUnavailable,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceError,
)
from services.gateway.replicas import DRAINING_SECONDS, UNREACHABLE_SECONDS, Replica, ReplicaSet
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
PROBE_TIMEOUT_SECONDS = 2.0
LIVE_MAX_EVENT_BYTES = 4 << 20  # the largest event a predictor's live session sends (a transcript with logprobs)
CHUNK = 1 << 16  # bytes read from an upload's spool file at a time
CLIENT_ERRORS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}  # the client's to fix: passed on as they are
Body = Callable[[], Any]  # makes the request body afresh (a retry sends it again)


class Backend:
    def __init__(
        self,
        label: str,
        base_url: str,
        model_name: str,
        *,
        token: str | None,
        settings: GatewaySettings,
        transport: httpx.AsyncBaseTransport | None = None,
        discovery: str | None = None,
        on_reroute: Callable[[str, str], None] | None = None,
    ) -> None:
        self.label, self.model_name = label, model_name
        self.replicas = ReplicaSet(label, base_url.rstrip("/"), discovery, settings.replica_refresh_seconds)
        self.on_reroute = on_reroute  # (backend, reason) for every request sent on to another replica
        self.retry_after = settings.retry_after_seconds
        self.read_timeout = settings.read_timeout
        self.connect_timeout = settings.connect_timeout
        timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
        limits = httpx.Limits(max_connections=settings.max_connections, keepalive_expiry=settings.keepalive_expiry)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers, transport=transport)

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.model_name}/infer"

    @property
    def stream_path(self) -> str:
        """The predictors' own streaming route (KServe has none for audio)."""
        return f"/v2/models/{self.model_name}/infer_stream"

    async def close(self) -> None:
        await self.client.aclose()

    async def _send(
        self, method: str, path: str, body: Body | None, headers: dict[str, str], stream: bool
    ) -> httpx.Response:
        """Send to the least loaded replica (``ReplicaSet``). Sent on to the next one: a request a
        replica refused before working on it (429 full, 503 draining), and one that provably never
        reached it (no connection) or could not change anything (a read); with one replica, such a
        failure is sent once more. A POST whose connection broke after it was written may have been
        worked on: it is never sent twice (a poison file, a voice upload). When every replica refused,
        the client gets the last refusal (with its Retry-After)."""
        headers = {**headers, "x-request-id": REQUEST_ID.get()}
        if (owner := OWNER.get()) is not None:  # whose voices the request may see (tenants)
            headers[OWNER_HEADER] = owner
        tried: set[Replica] = set()
        refusal: httpx.Response | None = None
        failure: httpx.HTTPError | None = None
        for _ in range(max(2, len(self.replicas.replicas))):
            replica = self.replicas.choose(tried)
            if replica is None:
                break
            response, failure, reason = await self._attempt(replica, method, path, body, headers, stream=stream)
            if response is not None and reason is None:
                return response
            if response is None:
                if self.replicas.many:
                    tried.add(replica)
                log.info("%s backend: %s on %s; sending on", self.label, type(failure).__name__, replica.url)
                continue
            tried.add(replica)
            refusal = response
            if len(tried) == len(self.replicas.replicas):
                break  # every replica refused: the client gets the refusal
            if self.on_reroute is not None and reason is not None:
                self.on_reroute(self.label, reason)
        if refusal is not None:
            return refusal
        assert failure is not None  # noqa: S101 - the loop ran at least once
        raise self._transport_error(failure, method)

    async def _attempt(
        self, replica: Replica, method: str, path: str, body: Body | None, headers: dict[str, str], *, stream: bool
    ) -> tuple[httpx.Response | None, httpx.HTTPError | None, str | None]:
        """One try on one replica: (its answer, None, why it refused or None), or (None, a transport
        failure that may be sent on, None); a failure that may not be sent on is raised. The request
        counts on the replica until its answer is read: a streamed one until the stream is closed."""
        answered = False
        try:
            request = self.client.build_request(
                method, replica.url + path, content=body() if body else None, headers=headers
            )
            try:
                response = await self.client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                if not _safe_to_resend(method, exc):
                    raise self._transport_error(exc, method) from exc
                if isinstance(exc, httpx.ConnectError):
                    replica.avoid(UNREACHABLE_SECONDS, "unreachable")
                return None, exc, None
            replica.observe(response)
            reason = await self._refused(replica, response)
            if reason is None and stream:
                answered = True
                return _finishing(response, replica), None, None
            return response, None, reason
        finally:
            if not answered:  # read whole, refused, failed or cancelled: done on that replica
                replica.finished()

    async def _refused(self, replica: Replica, response: httpx.Response) -> str | None:
        """Why the replica refused the request before any work (``busy``, ``draining``), or None."""
        if response.status_code not in (429, 503):
            return None
        await response.aread()
        if response.status_code == 429:
            retry_after = response.headers.get("retry-after", "")
            replica.avoid(float(retry_after) if retry_after.isdigit() else self.retry_after, "busy")
            return "busy"
        if _backend_error(response).get("code") == "shutting_down":
            replica.avoid(DRAINING_SECONDS, "draining")
            return "draining"
        return None  # a model that cannot load: the predictor's answer, passed on

    def _transport_error(self, exc: httpx.HTTPError, method: str = "GET") -> ServiceError:
        log.warning("%s backend transport error: %s: %s", self.label, type(exc).__name__, exc)
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendUnavailable(
                f"{self.label} backend unavailable: connecting timed out",
                code="backend_unavailable",
                headers={"Retry-After": str(self.retry_after)},
            )
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeout(
                f"{self.label} backend timed out after {self.read_timeout:.0f} s",
                code="backend_timeout",
                headers=no_retry(),
            )
        if isinstance(exc, httpx.ConnectError):
            return BackendFailed(f"{self.label} backend request failed: could not connect", code="backend_unreachable")
        # the predictor may have worked on it (and may fail the same way again): the SDKs must not resend it
        return BackendFailed(
            f"{self.label} backend request failed: the connection broke off",
            code="backend_connection_failed",
            headers=no_retry() if method == "POST" else {},
        )

    @property
    def live_path(self) -> str:
        """The ASR predictor's live transcription WebSocket (``services.common.live_wire``)."""
        return f"/v2/models/{self.model_name}/live"

    async def live(self) -> ClientConnection:
        """A live session's WebSocket to the least loaded replica; a replica that refuses the handshake
        (429 full, 503 draining) or cannot be reached is passed over, as for requests. When every
        replica refused, the last refusal is raised (a 429 or 503 for the client's own handshake)."""
        headers = {"x-request-id": REQUEST_ID.get(), **self.client.headers}
        tried: set[Replica] = set()
        refusal: ServiceError | None = None
        for _ in range(max(2, len(self.replicas.replicas))):
            replica = self.replicas.choose(tried)
            if replica is None:
                break
            url = "ws" + replica.url.removeprefix("http") + self.live_path
            replica.finished()  # live sessions have their own limit on the predictor, not its request queue
            try:
                return await websockets.connect(
                    url,
                    additional_headers={
                        k: v for k, v in headers.items() if k.lower() in ("authorization", "x-request-id")
                    },
                    open_timeout=self.connect_timeout,
                    max_size=LIVE_MAX_EVENT_BYTES,
                    compression=None,
                    proxy=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                refusal = self._live_refusal(replica, status, exc.response.headers.get("retry-after", ""))
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                log.warning("%s backend: live session on %s failed: %s", self.label, replica.url, type(exc).__name__)
                replica.avoid(UNREACHABLE_SECONDS, "unreachable")
                refusal = BackendFailed(
                    f"{self.label} backend request failed: could not connect", code="backend_unreachable"
                )
            if self.replicas.many:
                tried.add(replica)
        raise refusal or BackendFailed(f"{self.label} backend request failed", code="backend_unreachable")

    def _live_refusal(self, replica: Replica, status: int, retry_after: str) -> ServiceError:
        seconds = float(retry_after) if retry_after.isdigit() else self.retry_after
        if status == 429:
            replica.avoid(seconds, "busy")
            return BackendBusy(
                f"{self.label} backend has no room for another live session",
                code="server_busy",
                headers={"Retry-After": str(int(seconds))},
            )
        if status == 503:
            replica.avoid(DRAINING_SECONDS, "draining")
            return BackendUnavailable(
                f"{self.label} backend unavailable",
                code="backend_unavailable",
                headers={"Retry-After": str(int(seconds))},
            )
        return BackendFailed(f"{self.label} backend refused the live session (HTTP {status})", code="backend_failed")

    async def ready(self) -> bool:
        """Whether the predictor answers its readiness probe now (for the gateway's own /readyz)."""
        try:
            response = await self.client.get(f"{self.replicas.url}/readyz", timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def post(self, path: str, body: Body, headers: dict[str, str]) -> httpx.Response:
        response = await self._send("POST", path, body, headers, stream=False)
        self.raise_for_status(response)
        return response

    async def get_json(self, path: str) -> Any:
        return await self.json("GET", path)

    async def json(
        self, method: str, path: str, body: Body | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        """A management route's JSON answer (the TTS voice library)."""
        response = await self._send(method, path, body, headers or {}, stream=False)
        self.raise_for_status(response)
        try:
            return response.json()
        except ValueError as exc:
            raise self.malformed(exc) from exc

    def raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        error = _backend_error(response)
        message = str(error.get("message") or "")
        passed = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "x-should-retry")}
        if status in CLIENT_ERRORS and (status in (400, 413) or "type" in error):  # 404 etc.: ours, not KServe's
            raise CLIENT_ERRORS[status](
                message or f"{self.label} backend refused the request", param=error.get("param"), code=error.get("code")
            )
        if status == 429:
            raise BackendBusy(
                message or f"{self.label} backend is at capacity",
                code="server_busy",
                headers=passed or {"Retry-After": str(self.retry_after)},
            )
        if status == 503:
            raise BackendUnavailable(
                message or f"{self.label} backend unavailable",
                code=error.get("code"),
                headers=passed or {"Retry-After": str(self.retry_after)},
            )
        log.warning("%s backend answered %d: %s", self.label, status, message[:500])
        if status == 401:
            raise BackendFailed(
                f"{self.label} backend refused the gateway's token (check *_AUTH_TOKEN and GATEWAY_{self.label}_TOKEN)",
                code="backend_auth_failed",
                headers=no_retry(),
            )
        raise BackendFailed(f"{self.label} backend failed (HTTP {status})", code="backend_failed", headers=no_retry())

    def malformed(self, exc: Exception) -> BackendFailed:
        log.warning("%s backend returned a malformed response: %s: %s", self.label, type(exc).__name__, exc)
        return BackendFailed(
            f"{self.label} backend returned a malformed response", code="backend_failed", headers=no_retry()
        )

    def output(self, response: httpx.Response, name: str) -> v2wire.DecodedOutput:
        try:
            return v2wire.decode_response(response.content, response.headers)[name]
        except (ValueError, KeyError, TypeError) as exc:
            raise self.malformed(exc) from exc

    async def infer(self, header: v2wire.InferRequestHeader, blobs: list[Blob], output: str) -> v2wire.DecodedOutput:
        body, headers = request_body(header, blobs)
        response = await self.post(self.infer_path, body, headers)
        return self.output(response, output)

    async def open_stream(self, header: v2wire.InferRequestHeader, blobs: list[Blob]) -> httpx.Response:
        """POST to the streaming route; the response comes back with its body unread (the caller
        closes it)."""
        body, headers = request_body(header, blobs)
        response = await self._send("POST", self.stream_path, body, headers, stream=True)
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            self.raise_for_status(response)
        return response


class Blob:
    """One binary BYTES input: elements given as bytes, or as a size and a chunk source (an upload
    streamed from its spool file)."""

    def __init__(self, name: str, sizes: list[int], chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self.name, self.sizes, self.chunks = name, sizes, chunks

    @classmethod
    def of(cls, name: str, elements: list[bytes]) -> Blob:
        async def chunks() -> AsyncIterator[bytes]:
            for element in elements:
                yield v2wire.element_prefix(len(element))
                yield element

        return cls(name, [len(e) for e in elements], chunks)

    @classmethod
    def upload(cls, name: str, file: UploadFile, size: int) -> Blob:
        """A multipart upload, read from its spool file each time the body is sent."""

        async def chunks() -> AsyncIterator[bytes]:
            await file.seek(0)
            while chunk := await file.read(CHUNK):
                yield chunk

        return cls.stream(name, size, chunks)

    @classmethod
    def stream(cls, name: str, size: int, source: Callable[[], AsyncIterator[bytes]]) -> Blob:
        async def chunks() -> AsyncIterator[bytes]:
            yield v2wire.element_prefix(size)
            async for chunk in source():
                yield chunk

        return cls(name, [size], chunks)


def request_body(header: v2wire.InferRequestHeader, blobs: list[Blob]) -> tuple[Body, dict[str, str]]:
    header.binary_inputs = [v2wire.BinaryInput.bytes_elements(b.name, b.sizes) for b in blobs]
    head = header.encode()

    def body() -> AsyncIterator[bytes] | bytes:
        if not blobs:
            return head

        async def parts() -> AsyncIterator[bytes]:
            yield head
            for blob in blobs:
                async for chunk in blob.chunks():
                    yield chunk

        return parts()

    return body, v2wire.request_headers(head, header.body_length(head))


def _finishing(response: httpx.Response, replica: Replica) -> httpx.Response:
    """A streamed answer: the request counts on its replica until the stream is closed (read to its end,
    or given up by a client that left)."""
    close = response.aclose
    done = [False]

    async def aclose() -> None:
        try:
            await close()
        finally:
            if not done[0]:
                done[0] = True
                replica.finished()

    response.aclose = aclose  # type: ignore[method-assign]
    return response


def _safe_to_resend(method: str, exc: httpx.HTTPError) -> bool:
    if isinstance(exc, httpx.ConnectError):  # no connection: nothing was sent
        return True
    return method == "GET" and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError))


def new_request(parameters: dict[str, Any]) -> v2wire.InferRequestHeader:
    return v2wire.InferRequestHeader(REQUEST_ID.get(), {k: v for k, v in parameters.items() if v is not None})


def _backend_error(response: httpx.Response) -> dict[str, Any]:
    """The backend's error object (ours: OpenAI's envelope; KServe's own: ``{"error": "..."}``)."""
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return error
    return {"message": str(error)} if error else {}
