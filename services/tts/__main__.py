"""``python -m services.tts``: settings -> engine -> predictor -> KServe ModelServer."""

import logging

from services.common.predictor_server import serve
from services.tts.engine import TtsEngine
from services.tts.predictor import TtsPredictor
from services.tts.settings import TtsSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tts %(levelname)s %(name)s: %(message)s")
    settings = TtsSettings()
    predictor = TtsPredictor(settings.model_name, TtsEngine(settings), settings.max_concurrency)
    serve(predictor, settings.host, settings.http_port)


if __name__ == "__main__":
    main()
