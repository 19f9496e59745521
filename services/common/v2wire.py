"""The KServe/Open Inference Protocol v2 REST wire format with the binary data extension.

Pure helpers shared by the gateway (which builds requests and reads responses) and the predictors.
A binary tensor travels after the JSON header; ``Inference-Header-Content-Length`` gives the
header's length. A ``BYTES`` element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

HEADER_LENGTH = "inference-header-content-length"
OCTET_STREAM = "application/octet-stream"


@dataclass
class BinaryInput:
    """One tensor sent as raw bytes after the JSON header."""

    name: str
    datatype: str
    shape: list[int]
    size: int  # bytes on the wire, length prefixes included


@dataclass
class InferRequestHeader:
    request_id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    json_inputs: list[dict[str, Any]] = field(default_factory=list)
    binary_inputs: list[BinaryInput] = field(default_factory=list)
    binary_outputs: bool = False

    def encode(self) -> bytes:
        params = dict(self.parameters)
        if self.binary_outputs:
            params["binary_data_output"] = True
        inputs = list(self.json_inputs) + [
            {"name": b.name, "datatype": b.datatype, "shape": b.shape,
             "parameters": {"binary_data_size": b.size}}
            for b in self.binary_inputs
        ]
        return json.dumps({"id": self.request_id, "parameters": params, "inputs": inputs},
                          separators=(",", ":")).encode()


def request_headers(header: bytes) -> dict[str, str]:
    return {"content-type": OCTET_STREAM, HEADER_LENGTH: str(len(header))}


def blob_prefix(header: InferRequestHeader, size: int, name: str = "audio") -> tuple[bytes, dict[str, str]]:
    """Declare one binary BYTES input of ``size`` bytes. Returns what goes on the wire before those
    bytes (the JSON header and the element's length prefix) and the HTTP headers of the whole body."""
    header.binary_inputs.append(BinaryInput(name, "BYTES", [1], 4 + size))
    head = header.encode()
    prefix = head + struct.pack("<I", size)
    return prefix, request_headers(head) | {"content-length": str(len(prefix) + size)}


@dataclass
class DecodedOutput:
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any]
    data: list[Any] | None = None
    raw: bytes | None = None

    def single_bytes(self) -> bytes:
        """The one element of a BYTES tensor, whether it came as JSON or binary."""
        if self.raw is not None:
            (length,) = struct.unpack_from("<I", self.raw)
            return self.raw[4:4 + length]
        value = (self.data or [None])[0]
        return value.encode() if isinstance(value, str) else bytes(value or b"")


def decode_response(body: bytes, headers: dict[str, str] | Any) -> dict[str, DecodedOutput]:
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
            decoded.raw = body[offset:offset + size]
            offset += size
        outputs[decoded.name] = decoded
    return outputs
