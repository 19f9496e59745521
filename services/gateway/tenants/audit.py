"""The audit trail: one JSON line per call on its own logger (``speech_stack.audit``, so it can be
routed apart from the access log): time, request id, key name, route, model, audio seconds or
characters, status and duration. Never the content, the audio, a transcript or a key."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.asgi import RequestRecord
from services.common.logs import REQUEST_ID

audit = logging.getLogger("speech_stack.audit")


def line(
    *, request_id: str, key: str | None, method: str, route: str, status: int, seconds: float, fields: dict[str, Any]
) -> str:
    return json.dumps(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id,
            "key": key,
            "method": method,
            "route": route,
            "model": fields.get("model"),
            "audio_seconds": fields.get("audio_seconds"),
            "characters": fields.get("characters"),
            "status": status,
            "duration_ms": round(seconds * 1000),
        },
        separators=(",", ":"),
    )


def record(entry: RequestRecord) -> None:
    """An HTTP call (``RequestContext``'s record, while its request id is still current)."""
    if entry.route in ("/healthz", "/readyz", "/metrics"):
        return
    audit.info(line(request_id=REQUEST_ID.get(), key=entry.fields.get("key"), method=entry.method,
                    route=entry.route, status=entry.status or 499, seconds=entry.seconds,
                    fields=entry.fields))  # fmt: skip


class WebSocketAudit:
    """A WebSocket session's line when it ends: its key, how long it lasted, and its status (101 for a
    session that was accepted, or the refusal's HTTP status)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]

        async def watching(message: Message) -> None:
            if message["type"] == "websocket.accept":
                status[0] = 101
            elif message["type"] == "websocket.http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            state = scope.get("state") or {}
            key = state.get("api_key")
            audit.info(line(request_id=REQUEST_ID.get(), key=key.name if key else None, method="WEBSOCKET",
                            route=scope["path"], status=status[0] or 499, seconds=time.perf_counter() - started,
                            fields=dict(state.get("log", {}))))  # fmt: skip
