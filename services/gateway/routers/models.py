from __future__ import annotations

from fastapi import APIRouter, Request

from services.common.errors import echo
from services.gateway.errors import NotFound
from services.gateway.openapi import ERROR_RESPONSES
from services.gateway.protocol.models import Model

router = APIRouter(
    prefix="/v1",
    tags=["models"],
    responses={401: ERROR_RESPONSES[401], 404: {**ERROR_RESPONSES[400], "description": "No such model"}},
)


async def served_models(request: Request) -> list[Model]:
    state = request.app.state
    ids = [model_id for model_id, _ in await state.catalog.all()]
    return [Model(id=i, created=state.started, object="model", owned_by="speech-stack") for i in ids]


@router.get("/models")
async def list_models(request: Request) -> dict:
    """Every model the predictors serve (each predictor is asked; one that cannot be reached is left out)."""
    return {"object": "list", "data": [m.model_dump() for m in await served_models(request)]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict:
    for model in await served_models(request):
        if model.id == model_id:
            return model.model_dump()
    raise NotFound(f"The model '{echo(model_id)}' does not exist", param="model", code="model_not_found")
