"""``python -m services.asr``: settings -> engine -> predictor -> KServe ModelServer."""

import logging

from services.asr.engine import AsrEngine
from services.asr.predictor import AsrPredictor, add_stream_route
from services.asr.settings import AsrSettings
from services.common.predictor_server import serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s asr %(levelname)s %(name)s: %(message)s")
    settings = AsrSettings()
    engine = AsrEngine(settings)
    predictor = AsrPredictor(settings.model_name, engine, settings.max_concurrency)

    def add_routes(app) -> None:
        @app.get("/status", include_in_schema=False)
        async def status() -> dict:
            """Model lifetimes (loaded, in use, load count): Whisper per public id, aligners, diarization."""
            return engine.models_status()

        add_stream_route(app, predictor)

    serve(predictor, settings.host, settings.http_port, add_routes)


if __name__ == "__main__":
    main()
