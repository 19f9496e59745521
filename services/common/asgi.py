"""Plain ASGI middlewares shared by the gateway and the predictors (plain ASGI, so streamed bodies
pass through untouched and a stream that breaks off stays broken).

- ``RequestContext`` (outermost): the request id (``x-request-id``, validated, or a new one) on every
  response and every log line, an OpenAI-shaped 500 for anything unhandled, and one record per
  request for the access log and the metrics.
- ``BodyLimit``: refuses a body over the limit while it is read (413), before it is spooled anywhere.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import InternalError, PayloadTooLarge, ServiceError, error_bytes
from services.common.logs import REQUEST_ID, accept_request_id

log = logging.getLogger(__name__)

WS_CLOSE_SECONDS = 5  # a close frame a client that reads nothing never takes: then the connection is dropped


@dataclass
class RequestRecord:
    """What one finished request looked like (for the access log and the metrics)."""

    method: str
    path: str
    route: str
    status: int = 0
    seconds: float = 0.0
    first_byte: float | None = None  # seconds to the first body byte
    bytes_in: int = 0
    bytes_out: int = 0
    fields: dict[str, Any] = field(default_factory=dict)  # set by handlers: scope["state"]["log"]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def send_error(send: Send, exc: ServiceError, extra_headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = error_bytes(exc)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def annotate(scope: Scope, **fields: Any) -> None:
    """Fields for the request's access-log line and metrics (read by ``RequestContext``)."""
    scope.setdefault("state", {}).setdefault("log", {}).update(fields)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    def __init__(self, app: ASGIApp, on_complete: Callable[[RequestRecord], None] | None = None) -> None:
        self.app, self.on_complete = app, on_complete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = accept_request_id(header(scope, b"x-request-id"))
        token = REQUEST_ID.set(rid)
        record = RequestRecord(scope["method"], scope["path"], "unmatched")
        started = time.perf_counter()

        async def counting_receive() -> Message:
            message = await receive()
            record.bytes_in += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and message.get("body"):
                if record.first_byte is None:
                    record.first_byte = time.perf_counter() - started
                record.bytes_out += len(message["body"])
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if record.status:
                raise  # the response has started: leave it broken, never a short "success"
            await send_error(send_with_id, InternalError(f"internal error (request id {rid})"))
        finally:
            record.seconds = time.perf_counter() - started
            record.route = route_of(scope)
            record.fields = dict((scope.get("state") or {}).get("log", {}))
            if self.on_complete is not None:
                self.on_complete(record)
            REQUEST_ID.reset(token)


class BodyLimit:
    """413 for a body over ``limit_for(scope)`` bytes: at once from Content-Length, or as soon as
    the streamed bytes pass it (the app then sees a disconnect and its partial response is dropped)."""

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[Scope], int | None],
        param_for: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app, self.limit_for, self.param_for = app, limit_for, param_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(
            f"Maximum content size limit ({limit}) exceeded",
            param=self.param_for(scope) if self.param_for else None,
            code="request_too_large",
            headers={"Connection": "close"},
        )
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, too_large)
            return
        seen, exceeded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                exceeded = True
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to the cut body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await send_error(send, too_large)


async def deny_websocket(scope: Scope, send: Send, exc: ServiceError) -> None:
    """Refuse a WebSocket handshake with an HTTP error response in OpenAI's envelope (a bare 403
    where the server cannot send one)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(exc.body()).encode()
    rid = accept_request_id(header(scope, b"x-request-id"))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
        *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
    ]
    await send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
