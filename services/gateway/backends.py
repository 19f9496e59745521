"""The two predictors as seen from the gateway: one pooled ``httpx.AsyncClient`` each, KServe v2
infer requests, and every transport or status failure mapped to our errors here and only here."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.common import v2wire
from services.gateway.errors import BackendFailed, BackendTimeout, BackendUnavailable, InvalidRequest
from services.gateway.settings import GatewaySettings


class Backend:
    def __init__(self, label: str, base_url: str, model_name: str, settings: GatewaySettings) -> None:
        self.label, self.model_name = label, model_name
        self.retry_after = settings.retry_after_seconds
        timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
        limits = httpx.Limits(max_connections=settings.max_connections)
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)

    @property
    def infer_path(self) -> str:
        return f"/v2/models/{self.model_name}/infer"

    @property
    def stream_path(self) -> str:
        """The predictors' own streaming route (KServe has none for audio)."""
        return f"/v2/models/{self.model_name}/infer_stream"

    async def close(self) -> None:
        await self.client.aclose()

    async def _send(self, path: str, content: Any, headers: dict[str, str], stream: bool) -> httpx.Response:
        request = self.client.build_request("POST", path, content=content, headers=headers)
        try:
            return await self.client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"{self.label} backend timed out: {_describe(exc)}") from exc
        except httpx.TransportError as exc:
            raise BackendFailed(f"{self.label} backend request failed: {_describe(exc)}") from exc

    async def post(self, path: str, content: Any, headers: dict[str, str]) -> httpx.Response:
        response = await self._send(path, content, headers, stream=False)
        self.raise_for_status(response)
        return response

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        detail = _backend_message(response)
        if response.status_code == 400:
            raise InvalidRequest(detail)
        if response.status_code == 503:
            raise BackendUnavailable(f"{self.label} backend unavailable: {detail}",
                                     headers={"Retry-After": str(self.retry_after)})
        raise BackendFailed(f"{self.label} backend failed ({response.status_code}): {detail}")

    def output(self, response: httpx.Response, name: str) -> v2wire.DecodedOutput:
        try:
            return v2wire.decode_response(response.content, response.headers)[name]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendFailed(f"{self.label} backend returned a malformed response: {_describe(exc)}",
                                headers={"x-should-retry": "false"}) from exc

    async def infer(self, header: v2wire.InferRequestHeader, output: str) -> v2wire.DecodedOutput:
        body = header.encode()
        response = await self.post(self.infer_path, body, {"content-type": "application/json"})
        return self.output(response, output)

    async def infer_with_blob(self, header: v2wire.InferRequestHeader, chunks: AsyncIterator[bytes],
                              size: int, output: str) -> v2wire.DecodedOutput:
        """One binary BYTES input streamed from ``chunks`` after the JSON header."""
        body, headers = blob_body(header, chunks, size)
        response = await self.post(self.infer_path, body, headers)
        return self.output(response, output)

    async def open_stream(self, content: Any, headers: dict[str, str]) -> httpx.Response:
        """POST to the streaming route; the response comes back with its body unread (the caller
        closes it)."""
        response = await self._send(self.stream_path, content, headers, stream=True)
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            self.raise_for_status(response)
        return response


def blob_body(header: v2wire.InferRequestHeader, chunks: AsyncIterator[bytes], size: int):
    """The v2 body with one binary BYTES input streamed from ``chunks``, and its headers."""
    prefix, headers = v2wire.blob_prefix(header, size)

    async def body() -> AsyncIterator[bytes]:
        yield prefix
        async for chunk in chunks:
            yield chunk

    return body(), headers


def new_request(parameters: dict[str, Any]) -> v2wire.InferRequestHeader:
    return v2wire.InferRequestHeader(str(uuid.uuid4()), {k: v for k, v in parameters.items() if v is not None})


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _backend_message(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:500] or response.reason_phrase
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error or doc.get("detail") or doc)
