"""``python -m services.asr``: settings -> engine -> predictor -> KServe ModelServer."""

import logging

from services.common.predictor_server import serve
from services.asr.engine import AsrEngine
from services.asr.predictor import AsrPredictor
from services.asr.settings import AsrSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s asr %(levelname)s %(name)s: %(message)s")
    settings = AsrSettings()
    predictor = AsrPredictor(settings.model_name, AsrEngine(settings), settings.max_concurrency)
    serve(predictor, settings.host, settings.http_port)


if __name__ == "__main__":
    main()
