"""``GET /v1/admin/usage``: every key's use of its limits in the current windows (requests this
minute, characters and audio seconds this hour), for keys marked ``admin`` in the key file."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.common.errors import Forbidden, Unavailable
from services.gateway.openapi import ERROR_RESPONSES
from services.gateway.tenants.gate import key_of

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/usage")
async def usage(request: Request) -> dict:
    caller = key_of(request.scope)
    if caller is None or not caller.admin:
        raise Forbidden("usage is readable with an admin key only", code="admin_key_required")
    tenancy = request.app.state.tenancy
    try:
        data = [
            {"object": "usage.key", "key": key.name, "owner": key.owner, **await tenancy.quotas.usage(key)}
            for key in tenancy.ring.all()
        ]
    except Exception as exc:  # the quota store failed
        tenancy.usage.store_errors.inc()
        raise Unavailable("usage cannot be read now: the quota store failed", code="quota_store_unavailable") from exc
    return {"object": "list", "data": data}
