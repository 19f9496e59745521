"""``python -m services.tts``: settings -> engine -> predictor -> KServe ModelServer."""

import logging

from services.common.predictor_server import serve
from services.tts.engine import TtsEngine
from services.tts.predictor import TtsPredictor, add_stream_route
from services.tts.settings import TtsSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tts %(levelname)s %(name)s: %(message)s")
    settings = TtsSettings()
    engine = TtsEngine(settings)
    predictor = TtsPredictor(settings.model_name, engine, settings.max_concurrency)

    def add_routes(app) -> None:
        @app.get("/status", include_in_schema=False)
        async def status() -> dict:
            """Model lifetime (loaded, in use, load count)."""
            return {"model": engine.model.status(), "streams_cancelled": engine.streams_cancelled}

        add_stream_route(app, predictor)

    serve(predictor, settings.host, settings.http_port, add_routes)


if __name__ == "__main__":
    main()
