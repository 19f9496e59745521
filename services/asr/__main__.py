"""``python -m services.asr``: settings -> engine -> predictor -> v2 server."""

from services.asr.engine import AsrEngine
from services.asr.metrics import AsrMetrics
from services.asr.predictor import AsrPredictor
from services.asr.settings import AsrSettings
from services.common.predictor_server import main

if __name__ == "__main__":
    main("asr", AsrSettings, AsrEngine, AsrPredictor, AsrMetrics)
