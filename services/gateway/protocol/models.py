"""/v1/models answers use the official SDK's ``Model`` type so the JSON cannot drift."""

from openai.types import Model

__all__ = ["Model"]
