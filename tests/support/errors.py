"""The error object of an official-SDK exception (the SDK types ``body`` as ``object``)."""

from __future__ import annotations

from typing import Any

import openai


def error_of(error: openai.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of the response (the SDK has already unwrapped the envelope)."""
    assert isinstance(error.body, dict), error.body
    return error.body
