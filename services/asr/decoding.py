"""The two decoding paths over one loaded WhisperX pipeline.

- ``batched``: ``FasterWhisperPipeline.transcribe`` (WhisperX: pyannote VAD + batched decoding), the
  default. A small wrapper around the CTranslate2 model also collects each segment's no-speech
  probability (and, when asked, each token's log-probability) and reports each decoded batch as it
  finishes (streaming text).
- ``sequential``: faster-whisper's own ``transcribe`` on the same model object, with Whisper's
  cross-attention word timestamps (``ASR_WORD_TIMESTAMPS=whisper``): segment by segment.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from services.asr.result import verbose_segment

OnText = Callable[[str, list[dict] | None], None]  # a decoded piece of text and its token logprobs
TokenLogprobs = list[tuple[int, float]]


class Cancelled(RuntimeError):
    """The client went away; decoding stopped between batches."""


class DecodeHooks:
    """Wraps the CTranslate2 Whisper model (``pipe.model.model``): every ``generate`` call also
    returns no-speech probabilities (and with ``logprobs`` the log-probability of every emitted
    token), and a per-request listener sees each batch's results."""

    def __init__(self, model) -> None:
        self._model = model
        self.reset()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def reset(self, listener: Callable[[list, list[TokenLogprobs | None]], None] | None = None,
              cancel: threading.Event | None = None, logprobs: bool = False) -> None:
        self.no_speech: list[float] = []
        self.listener, self.cancel, self.logprobs = listener, cancel, logprobs

    def generate(self, *args, **kwargs):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("client disconnected")
        kwargs["return_no_speech_prob"] = True  # faster-whisper's own path already asks for it
        kwargs["return_logits_vocab"] = self.logprobs  # CTranslate2 fills it for greedy search only
        results = self._model.generate(*args, **kwargs)
        self.no_speech.extend(float(r.no_speech_prob) for r in results)
        if self.listener is not None:
            self.listener(results, [token_logprobs(r) if self.logprobs else None for r in results])
        return results


def token_logprobs(result) -> TokenLogprobs:
    """log softmax of each step's logits (after Whisper's token suppression) at the emitted token."""
    out = []
    for token, step in zip(result.sequences_ids[0], result.logits[0]):
        logits = np.array(step).astype(np.float64)
        peak = logits.max()
        out.append((token, float(logits[token] - peak - np.log(np.exp(logits - peak).sum()))))
    return out


@functools.cache
def _byte_of_char() -> dict[str, int]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def openai_logprobs(hf_tokenizer, pairs: TokenLogprobs, eot: int) -> list[dict]:
    """OpenAI's ``Logprob`` items: the token's text, its UTF-8 bytes (a token may hold part of a
    character) and its log-probability. Whisper's special tokens are left out."""
    byte_of = _byte_of_char()
    out = []
    for token, logprob in pairs:
        if token >= eot:
            continue
        raw = bytes(byte_of[c] for c in hf_tokenizer.id_to_token(token))
        out.append({"token": raw.decode("utf-8", errors="replace"), "logprob": round(logprob, 6),
                    "bytes": list(raw)})
    return out


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
    hf_tokenizer = pipe.model.hf_tokenizer
    eot = hf_tokenizer.token_to_id("<|endoftext|>")

    logprobs: list[list[dict] | None] = []  # per generate() result, converted once

    def listener(results, pairs_per_result) -> None:
        for r, pairs in zip(results, pairs_per_result):
            logprobs.append(None if pairs is None else openai_logprobs(hf_tokenizer, pairs, eot))
            if on_text is not None and pipe.tokenizer is not None:
                on_text(pipe.tokenizer.decode(r.sequences_ids[0]), logprobs[-1])

    hooks.reset(listener, cancel, opts.logprobs)
    no_speech = hooks.no_speech
    saved = pipe.options
    # logprobs come from greedy decoding: CTranslate2 returns no per-step logits for beam search
    pipe.options = replace(saved, initial_prompt=opts.prompt, temperatures=[opts.temperature],
                           beam_size=1 if opts.logprobs else saved.beam_size)
    try:
        raw = pipe.transcribe(audio, batch_size=batch_size, language=opts.language, task=opts.task)
    finally:
        pipe.options = saved
        hooks.reset()
    tokenizer = tokenizer_for(pipe, raw["language"], opts.task)
    # one generate() result per VAD segment, in order
    segments = []
    for i, s in enumerate(raw["segments"]):
        segment = verbose_segment(i, s["start"], s["end"], s["text"], tokenizer.encode(s["text"]),
                                  opts.temperature, s["avg_logprob"], no_speech[i])
        if opts.logprobs:
            segment["logprobs"] = logprobs[i]
        segments.append(segment)
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
            on_text(seg.text, None)
    return info.language, segments
