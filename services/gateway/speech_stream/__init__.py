"""Speech fed by a text stream: vLLM-Omni's ``/v1/audio/speech/stream`` WebSocket protocol."""
