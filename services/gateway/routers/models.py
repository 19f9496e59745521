from __future__ import annotations

from fastapi import APIRouter, Request

from services.gateway.errors import NotFound
from services.gateway.protocol.models import Model

router = APIRouter(prefix="/v1", tags=["models"])


def served_models(request: Request) -> list[Model]:
    settings, created = request.app.state.settings, request.app.state.started
    ids = settings.transcription_models + settings.speech_models
    return [Model(id=i, created=created, object="model", owned_by="speech-stack") for i in ids]


@router.get("/models")
async def list_models(request: Request) -> dict:
    return {"object": "list", "data": [m.model_dump() for m in served_models(request)]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict:
    for model in served_models(request):
        if model.id == model_id:
            return model.model_dump()
    raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found")
