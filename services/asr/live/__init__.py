"""Live transcription in the ASR predictor: a realtime session's audio arrives here once (over a
WebSocket from the gateway), is resampled, scored by one VAD (Silero) and cut into turns here, and
decoded here: partial re-decodes of the open turn as speech arrives (their agreed prefix sent as
deltas), a final decode when the turn ends. The gateway only speaks OpenAI's protocol."""
