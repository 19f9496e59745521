"""The two decoding paths over one loaded WhisperX pipeline.

- ``batched``: ``FasterWhisperPipeline.transcribe`` (WhisperX: pyannote VAD + batched decoding), the
  default. A small wrapper around the CTranslate2 model also collects each segment's no-speech
  probability and reports each decoded batch as it finishes (streaming text).
- ``sequential``: faster-whisper's own ``transcribe`` on the same model object, with Whisper's
  cross-attention word timestamps (``ASR_WORD_TIMESTAMPS=whisper``): segment by segment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from services.asr.result import verbose_segment

OnText = Callable[[str], None]


class Cancelled(RuntimeError):
    """The client went away; decoding stopped between batches."""


class DecodeHooks:
    """Wraps the CTranslate2 Whisper model (``pipe.model.model``): every ``generate`` call also
    returns no-speech probabilities, and a per-request listener sees each batch's tokens."""

    def __init__(self, model) -> None:
        self._model = model
        self.no_speech: list[float] = []
        self.listener: Callable[[list], None] | None = None
        self.cancel: threading.Event | None = None

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def reset(self, listener=None, cancel: threading.Event | None = None) -> None:
        self.no_speech, self.listener, self.cancel = [], listener, cancel

    def generate(self, *args, **kwargs):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("client disconnected")
        kwargs["return_no_speech_prob"] = True  # faster-whisper's own path already asks for it
        results = self._model.generate(*args, **kwargs)
        self.no_speech.extend(float(r.no_speech_prob) for r in results)
        if self.listener is not None:
            self.listener(results)
        return results


def install_hooks(pipe) -> DecodeHooks:
    if not isinstance(pipe.model.model, DecodeHooks):
        pipe.model.model = DecodeHooks(pipe.model.model)
    return pipe.model.model


def tokenizer_for(pipe, language: str, task: str):
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(pipe.model.hf_tokenizer, pipe.model.model.is_multilingual, task=task, language=language)


def batched(pipe, audio: np.ndarray, opts, batch_size: int, on_text: OnText | None,
            cancel: threading.Event | None) -> tuple[str, list[dict]]:
    hooks = install_hooks(pipe)

    def listener(results) -> None:
        if on_text is not None and pipe.tokenizer is not None:
            for r in results:
                on_text(pipe.tokenizer.decode(r.sequences_ids[0]))

    hooks.reset(listener, cancel)
    no_speech = hooks.no_speech
    saved = pipe.options
    pipe.options = replace(saved, initial_prompt=opts.prompt, temperatures=[opts.temperature])
    try:
        raw = pipe.transcribe(audio, batch_size=batch_size, language=opts.language, task=opts.task)
    finally:
        pipe.options = saved
        hooks.reset()
    tokenizer = tokenizer_for(pipe, raw["language"], opts.task)
    # one generate() result per VAD segment, in order
    segments = [verbose_segment(i, s["start"], s["end"], s["text"], tokenizer.encode(s["text"]),
                                opts.temperature, s["avg_logprob"], no_speech[i])
                for i, s in enumerate(raw["segments"])]
    return raw["language"], segments


def sequential(pipe, audio: np.ndarray, opts, on_text: OnText | None,
               cancel: threading.Event | None) -> tuple[str, list[dict]]:
    install_hooks(pipe).reset()
    pieces, info = pipe.model.transcribe(
        audio, language=opts.language, task=opts.task, initial_prompt=opts.prompt,
        temperature=opts.temperature, word_timestamps=True, vad_filter=True)
    segments = []
    for seg in pieces:  # a generator: each segment is decoded only when asked for
        if cancel is not None and cancel.is_set():
            raise Cancelled("client disconnected")
        out = verbose_segment(len(segments), seg.start, seg.end, seg.text, list(seg.tokens), seg.temperature,
                              seg.avg_logprob, seg.no_speech_prob)
        out["words"] = [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3),
                         "score": round(w.probability, 3)} for w in seg.words or []]
        segments.append(out)
        if on_text is not None:
            on_text(seg.text)
    return info.language, segments
