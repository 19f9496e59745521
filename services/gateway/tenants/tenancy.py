"""The gateway's tenancy, built once from its settings: the key ring, the quotas on their store, the
usage counters, and what a handler calls to charge characters or audio to the caller's key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.types import Scope

from services.gateway.settings import GatewaySettings
from services.gateway.tenants.counters import Count, Counters, MemoryCounters, RedisCounters
from services.gateway.tenants.gate import add_headers, key_of
from services.gateway.tenants.keys import KeyRing
from services.gateway.tenants.quotas import Quotas
from services.gateway.tenants.usage import KeyUsage


@dataclass
class Tenancy:
    ring: KeyRing
    quotas: Quotas
    usage: KeyUsage
    counters: Counters
    _charging: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def from_settings(cls, settings: GatewaySettings, registry: CollectorRegistry) -> Tenancy:
        ring = KeyRing([k.get_secret_value() for k in settings.api_keys], settings.api_keys_file)
        counters: Counters = MemoryCounters()
        if settings.quota_redis_url:
            password = settings.quota_redis_password.get_secret_value() if settings.quota_redis_password else None
            counters = RedisCounters(settings.quota_redis_url, password, settings.quota_store_timeout)
        usage = KeyUsage(registry)
        quotas = Quotas(counters, settings.quota_store_failure == "open", usage.store_errors.inc)
        return cls(ring, quotas, usage, counters)

    async def characters(self, scope: Scope, amount: int) -> None:
        """Characters about to be spoken, charged to the caller's key (429 when over its hour)."""
        key = key_of(scope)
        if key is not None:
            add_headers(scope, await self.quotas.characters(key, amount))
            self.usage.spent(key.name, characters=amount)
        _add(scope, "characters", amount)

    async def audio_admission(self, scope: Scope) -> None:
        """Audio work may start while the caller's key has audio seconds left this hour."""
        key = key_of(scope)
        if key is not None:
            add_headers(scope, await self.quotas.audio_left(key))

    async def charge_audio(self, scope: Scope, seconds: float) -> Count | None:
        """The audio's length, once known, charged to the caller's key (the work is done: never refused)."""
        _add(scope, "audio_seconds", seconds)
        key = key_of(scope)
        if key is None:
            return None
        self.usage.spent(key.name, audio_seconds=seconds)
        return await self.quotas.charge_audio(key, seconds)

    def charge_audio_soon(self, scope: Scope, seconds: float) -> None:
        """``charge_audio`` from code that cannot wait (a stream's last event)."""
        task = asyncio.create_task(self.charge_audio(scope, seconds))
        self._charging.add(task)
        task.add_done_callback(self._charging.discard)


def _add(scope: Scope, field_name: str, amount: float) -> None:
    """Summed into the request's (or session's) log fields: the access log, audit line and metrics."""
    fields = scope.setdefault("state", {}).setdefault("log", {})
    fields[field_name] = round(fields.get(field_name, 0) + amount, 3)
