"""The two decoding paths over one loaded WhisperX pipeline.

- ``batched``: ``FasterWhisperPipeline.transcribe`` (WhisperX: pyannote VAD + batched decoding), the
  default. A small wrapper around the CTranslate2 model also collects each segment's no-speech
  probability (and, when asked, each token's log-probability) and reports each decoded batch as it
  finishes (streaming text).
- ``shared``: the same, with the CTranslate2 calls shared between requests by the model's
  ``SegmentBatcher`` (cross-request batching, ``ASR_CROSS_REQUEST_BATCHING``).
- ``sequential``: faster-whisper's own ``transcribe`` on the same model object, with Whisper's
  cross-attention word timestamps (``ASR_WORD_TIMESTAMPS=whisper``): segment by segment.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from services.asr.batcher import CallKey, SegmentBatcher, wait
from services.asr.result import compression_ratio, verbose_segment
from services.common.work import Cancelled

OnText = Callable[[str, list[dict] | None], None]  # a decoded piece of text and its token logprobs
TokenLogprobs = list[tuple[int, float]]


FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
FALLBACK_SEED = 0


@dataclass
class Decoded:
    """What the hooks keep of one ``generate`` result (one VAD segment)."""

    no_speech_prob: float
    temperature: float
    logprobs: TokenLogprobs | None


@dataclass
class Sampling:
    """How one request decodes: ``temperature`` > 0 samples at that temperature; 0 decodes greedily
    (beam search unless ``logprobs``) and, with ``fallback``, re-decodes a segment that looks like a
    failure (too repetitive or too unlikely) at rising temperatures, as OpenAI describes it."""

    temperature: float = 0.0
    fallback: bool = False
    logprobs: bool = False
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    redecoded: Callable[[float, int], None] | None = None  # (temperature, segments) per fallback decode

    def count_redecode(self, temperature: float, segments: int) -> None:
        if self.redecoded is not None:
            self.redecoded(temperature, segments)


class DecodeHooks:
    """Wraps the CTranslate2 Whisper model (``pipe.model.model``): every ``generate`` call applies the
    request's sampling, also returns no-speech probabilities (and with ``logprobs`` the log-probability
    of every emitted token), and a per-request listener sees each batch's results."""

    def __init__(self, model) -> None:
        self._model = model
        self.reset()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    @property
    def raw(self):
        """The CTranslate2 model itself (the segment batcher applies each call's options)."""
        return self._model

    def reset(
        self,
        listener: Callable[[list, list[Decoded]], None] | None = None,
        cancel: threading.Event | None = None,
        sampling: Sampling | None = None,
        text_of: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.decoded: list[Decoded] = []
        self.listener, self.cancel = listener, cancel
        self.sampling, self.text_of = sampling or Sampling(), text_of

    def generate(self, features, prompts, **kwargs):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("client disconnected")
        sampling = self.sampling
        kwargs["return_no_speech_prob"] = True  # faster-whisper's own path already asks for it
        kwargs["return_logits_vocab"] = sampling.logprobs  # CTranslate2 fills it for greedy/sampling only
        results = self._at(sampling.temperature, features, prompts, kwargs)
        temperatures = [sampling.temperature] * len(results)
        if sampling.fallback and sampling.temperature == 0 and self.text_of is not None:
            self._fall_back(features, prompts, kwargs, results, temperatures)
        decoded = [
            Decoded(float(r.no_speech_prob), t, token_logprobs(r) if sampling.logprobs else None)
            for r, t in zip(results, temperatures, strict=False)
        ]
        self.decoded.extend(decoded)
        if self.listener is not None:
            self.listener(results, decoded)
        return results

    def _at(self, temperature: float, features, prompts, kwargs: dict) -> list:
        if temperature > 0:
            kwargs = kwargs | {
                "beam_size": 1,
                "num_hypotheses": 1,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        return self._model.generate(features, prompts, **kwargs)

    def _fall_back(self, features, prompts, kwargs: dict, results: list, temperatures: list[float]) -> None:
        """Replace the results that look like failures, in place."""
        failing = [i for i, r in enumerate(results) if self._failed(r, kwargs)]
        for temperature in FALLBACK_TEMPERATURES:
            if not failing:
                return
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("client disconnected")
            retry = self._at(temperature, features, prompts, kwargs)  # the whole batch: features are encoded
            self.sampling.count_redecode(temperature, len(results))
            for i in failing:
                better = _avg_logprob(retry[i], kwargs) > _avg_logprob(results[i], kwargs)
                if better or not self._failed(retry[i], kwargs):
                    results[i], temperatures[i] = retry[i], temperature
            failing = [i for i in failing if self._failed(results[i], kwargs)]

    def _failed(self, result, kwargs: dict) -> bool:
        return looks_failed(result, self.sampling, self.text_of, kwargs)  # type: ignore[arg-type]


def looks_failed(result, sampling: Sampling, text_of: Callable[[list[int]], str], kwargs: dict) -> bool:
    """OpenAI's rule for a decode worth redoing at a higher temperature: too repetitive (compression
    ratio) or too unlikely (average log-probability), unless the segment is silence."""
    avg = _avg_logprob(result, kwargs)
    if float(result.no_speech_prob) > sampling.no_speech_threshold and avg < sampling.log_prob_threshold:
        return False  # silence, not a failed decode
    text = text_of(list(result.sequences_ids[0]))
    return compression_ratio(text) > sampling.compression_ratio_threshold or avg < sampling.log_prob_threshold


def seed_sampling() -> None:
    """Fix the seed of CTranslate2's sampling (fallback re-decodes, temperature above 0). CTranslate2
    seeds each of its threads' generators once, when the thread first samples, and offers no reset:
    set at model load, a fresh process samples the same sequence; requests then draw from it in turn."""
    import ctranslate2

    ctranslate2.set_random_seed(FALLBACK_SEED)


def _avg_logprob(result, kwargs: dict) -> float:
    """WhisperX's average log-probability of a result (its score, undoing the length penalty)."""
    length = len(result.sequences_ids[0])
    penalty = kwargs.get("length_penalty", 1.0) or 1.0
    return float(result.scores[0]) * (length**penalty) / (length + 1)


def token_logprobs(result) -> TokenLogprobs:
    """log softmax of each step's logits (after Whisper's token suppression) at the emitted token."""
    out = []
    for token, step in zip(result.sequences_ids[0], result.logits[0], strict=False):
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
        out.append({"token": raw.decode("utf-8", errors="replace"), "logprob": round(logprob, 6), "bytes": list(raw)})
    return out


def install_hooks(pipe) -> DecodeHooks:
    """Wrap the CTranslate2 model, and give the pipeline the lock that serialises its VAD model."""
    if not isinstance(pipe.model.model, DecodeHooks):
        pipe.model.model = DecodeHooks(pipe.model.model)
        pipe.speech_stack_vad_lock = threading.Lock()
    return pipe.model.model


def tokenizer_for(pipe, language: str, task: str):
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(pipe.model.hf_tokenizer, pipe.model.model.is_multilingual, task=task, language=language)


def batched(
    pipe,
    audio: np.ndarray,
    opts,
    *,
    batch_size: int,
    sampling: Sampling,
    on_text: OnText | None,
    cancel: threading.Event | None,
) -> tuple[str, list[dict]]:
    hooks = install_hooks(pipe)
    hf_tokenizer = pipe.model.hf_tokenizer
    eot = hf_tokenizer.token_to_id("<|endoftext|>")
    logprobs: list[list[dict] | None] = []  # per generate() result, converted once

    def listener(results, decoded: list[Decoded]) -> None:
        for r, d in zip(results, decoded, strict=False):
            logprobs.append(None if d.logprobs is None else openai_logprobs(hf_tokenizer, d.logprobs, eot))
            if on_text is not None and pipe.tokenizer is not None:
                on_text(pipe.tokenizer.decode(r.sequences_ids[0]), logprobs[-1])

    def text_of(tokens: list[int]) -> str:
        return hf_tokenizer.decode([t for t in tokens if t < eot])

    hooks.reset(listener, cancel, sampling, text_of)
    saved = pipe.options
    # logprobs come from greedy decoding: CTranslate2 returns no per-step logits for beam search
    pipe.options = replace(saved, initial_prompt=opts.prompt, beam_size=1 if opts.logprobs else saved.beam_size)
    try:
        raw = pipe.transcribe(audio, batch_size=batch_size, language=opts.language, task=opts.task)
        decoded = hooks.decoded
    finally:
        pipe.options = saved
        hooks.reset()
    tokenizer = tokenizer_for(pipe, raw["language"], opts.task)
    segments = []
    for i, s in enumerate(raw["segments"]):  # one generate() result per VAD segment, in order
        segment = verbose_segment(
            i,
            start=s["start"],
            end=s["end"],
            text=s["text"],
            tokens=tokenizer.encode(s["text"]),
            temperature=decoded[i].temperature,
            avg_logprob=s["avg_logprob"],
            no_speech_prob=decoded[i].no_speech_prob,
        )
        if opts.logprobs:
            segment["logprobs"] = logprobs[i]
        segments.append(segment)
    return raw["language"], segments


def sequential(
    pipe, audio: np.ndarray, opts, *, sampling: Sampling, on_text: OnText | None, cancel: threading.Event | None
) -> tuple[str, list[dict]]:
    """faster-whisper's own loop (it applies the same temperature and fallback rules itself)."""
    install_hooks(pipe).reset()
    fallback = sampling.fallback and sampling.temperature == 0
    temperatures = [0.0, *FALLBACK_TEMPERATURES] if fallback else [sampling.temperature]
    pieces, info = pipe.model.transcribe(
        audio,
        language=opts.language,
        task=opts.task,
        initial_prompt=opts.prompt,
        temperature=temperatures,
        word_timestamps=True,
        vad_filter=True,
    )
    segments: list[dict] = []
    for seg in pieces:  # a generator: each segment is decoded only when asked for
        if cancel is not None and cancel.is_set():
            raise Cancelled("client disconnected")
        out = verbose_segment(
            len(segments),
            start=seg.start,
            end=seg.end,
            text=seg.text,
            tokens=list(seg.tokens),
            temperature=seg.temperature,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
        )
        out["words"] = [
            {
                "word": w.word.strip(),
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "score": round(w.probability, 3),
            }
            for w in seg.words or []
        ]
        segments.append(out)
        if on_text is not None:
            on_text(seg.text, None)
    return info.language, segments


def vad_chunks(pipe, audio: np.ndarray, chunk_size: int = 30) -> list[dict]:
    """WhisperX's VAD and chunk merging, as its ``transcribe`` does them (one lock per pipeline: the
    VAD model is shared by the requests decoding at once)."""
    from whisperx.audio import SAMPLE_RATE
    from whisperx.vads import Pyannote, Vad

    vad = pipe.vad_model
    prepare, merge = (
        (vad.preprocess_audio, vad.merge_chunks)
        if isinstance(vad, Vad)
        else (Pyannote.preprocess_audio, Pyannote.merge_chunks)
    )
    with pipe.speech_stack_vad_lock:
        found = vad({"waveform": prepare(audio), "sample_rate": SAMPLE_RATE})
    return merge(found, chunk_size, onset=pipe._vad_params["vad_onset"], offset=pipe._vad_params["vad_offset"])


def features_of(pipe, chunk: np.ndarray) -> np.ndarray:
    """The segment's log-mel features, padded to 30 s, as WhisperX's ``preprocess`` makes them."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    n_mels = pipe.model.feat_kwargs.get("feature_size") or 80
    return np.asarray(log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0]), dtype=np.float32)


def call_key(pipe, options, sampling: Sampling, temperature: float, prompt: list[int]) -> CallKey:
    return CallKey(
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
        suppress_blank=options.suppress_blank,
        suppress_tokens=tuple(options.suppress_tokens),
        max_length=pipe.model.max_length,
        temperature=temperature,
        logprobs=sampling.logprobs,
        prompt_length=len(prompt),
        timestamps=not options.without_timestamps,
    )


class _SharedRequest:
    """One request's side of cross-request batching: its prompt, decoding options and segments."""

    def __init__(
        self,
        pipe,
        audio: np.ndarray,
        opts,
        *,
        language: str,
        batcher: SegmentBatcher,
        sampling: Sampling,
        cancel: threading.Event | None,
    ) -> None:
        self.pipe, self.audio, self.batcher, self.sampling, self.cancel = pipe, audio, batcher, sampling, cancel
        self.tokenizer = tokenizer_for(pipe, language, opts.task)
        self.hf_tokenizer = pipe.model.hf_tokenizer
        self.eot = self.hf_tokenizer.token_to_id("<|endoftext|>")
        self.options = replace(
            pipe.options, initial_prompt=opts.prompt, beam_size=1 if opts.logprobs else pipe.options.beam_size
        )
        o = self.options
        previous = self.tokenizer.encode(" " + o.initial_prompt.strip()) if o.initial_prompt is not None else []
        self.prompt = pipe.model.get_prompt(
            self.tokenizer, previous, without_timestamps=o.without_timestamps, prefix=o.prefix, hotwords=o.hotwords
        )
        self.kwargs = {"length_penalty": o.length_penalty}

    def submit(self, chunk: dict, temperature: float, first: bool = False):
        from whisperx.audio import SAMPLE_RATE

        samples = self.audio[int(chunk["start"] * SAMPLE_RATE) : int(chunk["end"] * SAMPLE_RATE)]
        key = call_key(self.pipe, self.options, self.sampling, temperature, self.prompt)
        return self.batcher.submit(self, features_of(self.pipe, samples), self.prompt, key, self.cancel, first=first)

    def text_of(self, tokens: list[int]) -> str:
        return self.hf_tokenizer.decode([t for t in tokens if t < self.eot])

    def fails(self, result) -> bool:
        return looks_failed(result, self.sampling, self.text_of, self.kwargs)

    def fall_back(self, chunk: dict, result) -> tuple[Any, float]:
        """OpenAI's fallback for one segment: rising temperatures until a decode does not look failed
        (each re-decode goes through the batcher, ahead of the queue: this request waits on it)."""
        best, best_temperature = result, 0.0
        for temperature in FALLBACK_TEMPERATURES:
            retry = wait(self.submit(chunk, temperature, first=True), self.cancel)
            self.sampling.count_redecode(temperature, 1)
            if _avg_logprob(retry, self.kwargs) > _avg_logprob(best, self.kwargs) or not self.fails(retry):
                best, best_temperature = retry, temperature
            if not self.fails(best):
                break
        return best, best_temperature

    def segment(self, i: int, chunk: dict, result, temperature: float) -> dict:
        text = self.text_of(list(result.sequences_ids[0]))
        segment = verbose_segment(
            i,
            start=round(chunk["start"], 3),
            end=round(chunk["end"], 3),
            text=text,
            tokens=self.tokenizer.encode(text),
            temperature=temperature,
            avg_logprob=_avg_logprob(result, self.kwargs),
            no_speech_prob=float(result.no_speech_prob),
        )
        if self.sampling.logprobs:
            segment["logprobs"] = openai_logprobs(self.hf_tokenizer, token_logprobs(result), self.eot)
        return segment


def shared(
    pipe,
    audio: np.ndarray,
    opts,
    *,
    batcher: SegmentBatcher,
    sampling: Sampling,
    on_text: OnText | None,
    cancel: threading.Event | None,
) -> tuple[str, list[dict]]:
    """The batched path with the model's segment batcher: this request's VAD segments decode in
    CTranslate2 calls shared with the other requests waiting for the model. Same steps as
    ``batched`` (WhisperX's VAD, features and prompt; the same decoding options, fallback and text)."""
    chunks = vad_chunks(pipe, audio)
    language = opts.language or (pipe.detect_language(audio) if chunks else "en")
    request = _SharedRequest(pipe, audio, opts, language=language, batcher=batcher, sampling=sampling, cancel=cancel)
    pending = [(chunk, request.submit(chunk, sampling.temperature)) for chunk in chunks]
    segments = []
    for i, (chunk, future) in enumerate(pending):
        result, temperature = wait(future, cancel), sampling.temperature
        if sampling.fallback and sampling.temperature == 0 and request.fails(result):
            result, temperature = request.fall_back(chunk, result)
        segments.append(request.segment(i, chunk, result, temperature))
        if on_text is not None:
            on_text(segments[-1]["text"], segments[-1].get("logprobs"))
    return language, segments
