"""Settings both predictors share; each service's class (``AsrSettings``, ``TtsSettings``) extends
this one with its own ``env_prefix``, so every field is ``ASR_*`` / ``TTS_*`` and a Helm value."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from services.common.lifecycle import UnloadPolicy
from services.common.logs import LogFormat


class PredictorSettings(BaseSettings):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds (the chart sets 0.0.0.0 in pods).")
    http_port: int = Field(8080, ge=1, le=65535, description="KServe predictor port.")
    model_name: str = Field(..., description="KServe model name (/v2/models/<name>/infer).")
    auth_token: SecretStr | None = Field(
        None,
        description="When set, inference and model routes need 'Authorization: Bearer <token>' "
        "(the gateway's GATEWAY_*_TOKEN); health, readiness and metrics stay open.",
    )
    threads: int = Field(4, ge=1, le=256, description="CPU threads for the model runtime.")
    unload_policy: UnloadPolicy = Field(  # the string is parsed to seconds by UnloadPolicy
        "after_request",  # type: ignore[assignment]
        description="'after_request', 'never', or idle seconds before unloading.",
    )
    max_active: int = Field(
        1,
        ge=1,
        le=64,
        description="Requests worked on at once. Each model still runs one request at a "
        "time, so more than 1 only overlaps different models or stages.",
    )
    max_queue: int = Field(8, ge=0, le=10_000, description="Requests waiting for a place; beyond it: 429.")
    retry_after_seconds: int = Field(2, ge=1, le=120, description="Retry-After sent with a 429.")
    max_body_bytes: int = Field(48 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    shutdown_grace_seconds: float = Field(
        120.0, ge=0, description="On SIGTERM, how long requests in flight may finish (new ones get 503)."
    )
    keep_alive_seconds: int = Field(75, ge=1, description="Idle keep-alive; longer than the gateway's pool expiry.")
    log_format: LogFormat = Field("text", description="'text' or 'json' (one object per line).")
