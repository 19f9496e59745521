"""Logging for all three services: plain text by default or one JSON object per line, every
record tagged with the service and the id of the request it belongs to (a context variable, so it
follows the request into worker threads started with ``asyncio.to_thread``)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Literal

LogFormat = Literal["text", "json"]
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def accept_request_id(given: str | None) -> str:
    """A client's ``x-request-id`` when it is short and plain (it ends up in logs and headers),
    otherwise a new one."""
    return given if given and _VALID_ID.fullmatch(given) else new_request_id()


class _RequestIdFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": getattr(record, "service", "-"),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        doc |= getattr(record, "fields", {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def adopt(name: str) -> None:
    """Route a library logger that installs its own handler (WhisperX does) through ours."""
    logger = logging.getLogger(name)
    # a handler that does nothing, so the library sees itself configured and does not add its own again
    logger.handlers, logger.propagate = [logging.NullHandler()], True


def configure(service: str, fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Replace the root handlers (uvicorn's loggers propagate to it)."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter(service))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(service)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True
    logging.getLogger("uvicorn.access").disabled = True  # our access line replaces it
