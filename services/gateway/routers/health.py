from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness of the gateway itself; the backends load their models lazily."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: 503 while the gateway drains on shutdown, or while none of its predictors answers;
    the body names each predictor's state (``services.gateway.readiness``)."""
    if request.app.state.drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    ready, backends = await request.app.state.readiness.ready()
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "backends": backends}, status_code=200 if ready else 503
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
