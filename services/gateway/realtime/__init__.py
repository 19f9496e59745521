"""OpenAI's Realtime transcription sessions over WebSocket (``/v1/realtime?intent=transcription``)."""
