"""``python -m services.tts``: settings -> engine -> predictor -> v2 server."""

from services.common.predictor_server import main
from services.tts.engine import TtsEngine
from services.tts.predictor import TtsPredictor
from services.tts.settings import TtsSettings

if __name__ == "__main__":
    main("tts", TtsSettings, TtsEngine, TtsPredictor)
