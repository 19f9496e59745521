"""The KServe/Open Inference Protocol v2 REST wire format with the binary data extension.

Pure helpers shared by the gateway (builds requests, reads responses) and the predictors (read
requests, build responses). A binary tensor travels after the JSON header, whose length is in
``Inference-Header-Content-Length``. A ``BYTES`` element is a 4-byte little-endian length followed
by its bytes. Reading never copies a tensor: binary data is handed out as ``memoryview`` slices.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HEADER_LENGTH = "inference-header-content-length"
OCTET_STREAM = "application/octet-stream"
Buffer = bytes | bytearray | memoryview


class WireError(ValueError):
    """The body is not a well-formed v2 request or response."""


def element_prefix(size: int) -> bytes:
    return struct.pack("<I", size)


@dataclass
class BinaryInput:
    """One tensor sent as raw bytes after the JSON header."""

    name: str
    datatype: str
    shape: list[int]
    size: int  # bytes on the wire, length prefixes included

    @classmethod
    def bytes_elements(cls, name: str, sizes: list[int]) -> BinaryInput:
        """A BYTES tensor of ``len(sizes)`` elements of these sizes."""
        return cls(name, "BYTES", [len(sizes)], sum(4 + s for s in sizes))


@dataclass
class InferRequestHeader:
    request_id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    json_inputs: list[dict[str, Any]] = field(default_factory=list)
    binary_inputs: list[BinaryInput] = field(default_factory=list)

    def encode(self) -> bytes:
        inputs = [
            *self.json_inputs,
            *(
                {"name": b.name, "datatype": b.datatype, "shape": b.shape, "parameters": {"binary_data_size": b.size}}
                for b in self.binary_inputs
            ),
        ]
        params = {**self.parameters, "binary_data_output": True}
        return json.dumps(
            {"id": self.request_id, "parameters": params, "inputs": inputs}, separators=(",", ":")
        ).encode()

    def body_length(self, head: bytes) -> int:
        return len(head) + sum(b.size for b in self.binary_inputs)


def request_headers(head: bytes, total: int) -> dict[str, str]:
    return {"content-type": OCTET_STREAM, HEADER_LENGTH: str(len(head)), "content-length": str(total)}


# -- reading a request (predictors) -------------------------------------------------------------
@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None  # JSON data
    raw: memoryview | None = None  # binary data

    def elements(self) -> list[memoryview]:
        """The elements of a BYTES tensor: slices of the body when binary, or its JSON strings."""
        if self.datatype != "BYTES":
            raise WireError(f"input '{self.name}' must be a BYTES tensor")
        if self.raw is None:
            if not isinstance(self.data, list) or not all(isinstance(x, str) for x in self.data):
                raise WireError(f"input '{self.name}' has no binary data and no JSON strings")
            return [memoryview(x.encode("utf-8")) for x in self.data]
        out, offset = [], 0
        while offset < len(self.raw):
            if offset + 4 > len(self.raw):
                raise WireError(f"input '{self.name}' is truncated")
            (size,) = struct.unpack_from("<I", self.raw, offset)
            if offset + 4 + size > len(self.raw):
                raise WireError(f"input '{self.name}' is truncated")
            out.append(self.raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        if len(out) != (self.shape[0] if self.shape else 0):
            raise WireError(f"input '{self.name}' holds {len(out)} elements, its shape says {self.shape}")
        return out


@dataclass
class InferRequest:
    id: str
    parameters: dict[str, Any]
    inputs: dict[str, Tensor]

    def tensor(self, name: str) -> Tensor:
        try:
            return self.inputs[name]
        except KeyError:
            raise WireError(f"input '{name}' is missing") from None

    def optional(self, name: str) -> Tensor | None:
        return self.inputs.get(name)


def parse_request(body: Buffer, header_length: str | None) -> InferRequest:
    view = memoryview(body)
    try:
        json_len = int(header_length) if header_length is not None else len(view)
        doc = json.loads(bytes(view[:json_len]))
        offset, inputs = json_len, {}
        for spec in doc["inputs"]:
            tensor = Tensor(
                str(spec["name"]), str(spec["datatype"]), [int(d) for d in spec["shape"]], data=spec.get("data")
            )
            size = (spec.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                if int(size) < 0 or offset + int(size) > len(view):
                    raise WireError(f"input '{tensor.name}' is truncated")
                tensor.raw = view[offset : offset + int(size)]
                offset += int(size)
            inputs[tensor.name] = tensor
        params = doc.get("parameters") or {}
        if not isinstance(params, dict):
            raise WireError("parameters must be an object")
        return InferRequest(str(doc.get("id") or ""), params, inputs)
    except WireError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise WireError(f"malformed v2 request ({type(exc).__name__})") from exc


# -- a response -----------------------------------------------------------------------------------
@dataclass
class BinaryOutput:
    name: str
    datatype: str
    shape: list[int]
    data: Buffer
    parameters: dict[str, Any] = field(default_factory=dict)


def encode_response(request_id: str, model_name: str, outputs: list[BinaryOutput]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "model_name": model_name,
            "id": request_id,
            "outputs": [
                {
                    "name": o.name,
                    "datatype": o.datatype,
                    "shape": o.shape,
                    "parameters": {**o.parameters, "binary_data_size": len(o.data)},
                }
                for o in outputs
            ],
        },
        separators=(",", ":"),
    ).encode()
    body = b"".join([head, *(bytes(o.data) if not isinstance(o.data, bytes) else o.data for o in outputs)])
    return body, {"content-type": OCTET_STREAM, HEADER_LENGTH: str(len(head))}


@dataclass
class DecodedOutput:
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any]
    data: list[Any] | None = None
    raw: bytes | None = None


def decode_response(body: bytes, headers: Mapping[str, str]) -> dict[str, DecodedOutput]:
    """Parse a v2 infer response (plain JSON or JSON + binary outputs) into outputs by name."""
    length = headers.get(HEADER_LENGTH)
    json_len = int(length) if length is not None else len(body)
    doc = json.loads(body[:json_len])
    offset = json_len
    outputs: dict[str, DecodedOutput] = {}
    for out in doc.get("outputs", []):
        params = out.get("parameters") or {}
        decoded = DecodedOutput(out["name"], out["datatype"], out["shape"], params, out.get("data"))
        size = params.get("binary_data_size")
        if size is not None:
            if offset + int(size) > len(body):
                raise WireError(f"output '{decoded.name}' is truncated")
            decoded.raw = body[offset : offset + int(size)]
            offset += int(size)
        outputs[decoded.name] = decoded
    return outputs
