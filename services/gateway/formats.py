"""Render the ASR predictor's rich result into OpenAI's transcription response formats."""

from __future__ import annotations


def _clock(seconds: float, sep: str) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _cue_text(segment: dict) -> str:
    text = segment["text"].strip()
    speaker = segment.get("speaker")
    return f"[{speaker}] {text}" if speaker else text


def to_srt(segments: list[dict]) -> str:
    blocks = [
        f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{_cue_text(s)}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks) + ("\n" if blocks else "")


def to_vtt(segments: list[dict]) -> str:
    cues = [f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{_cue_text(s)}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues) + ("\n" if cues else "")
