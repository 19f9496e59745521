from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness of the gateway itself; the backends load their models lazily."""
    return {"status": "ok"}
