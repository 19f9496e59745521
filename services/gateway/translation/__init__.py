"""Realtime translation sessions (OpenAI's ``realtime.translations``)."""
