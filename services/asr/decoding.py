"""Whisper decoding over one loaded WhisperX pipeline, in one path: WhisperX's VAD merges speech into
chunks of at most 30 s, each chunk's log-mel features go to the model's ``SegmentBatcher`` (one
``encode`` and ``generate`` per batch, shared by every request decoding at once; with cross-request
batching off the engine holds the model's lock, so the batcher sees one request at a time), results
come back in order, and a chunk whose decode looks like a failure is decoded again at rising
temperatures, as OpenAI describes it. At most ``window`` chunks of a request are in flight, so a
two-hour file holds a few chunks' features, not all of them.

``sequential`` is faster-whisper's own loop, for Whisper's cross-attention word times
(``ASR_WORD_TIMESTAMPS=whisper``).
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from services.asr.batcher import CallKey, SegmentBatcher, wait
from services.asr.result import compression_ratio, verbose_segment
from services.common.work import Cancelled

OnText = Callable[[str, list[dict] | None], None]  # a decoded piece of text and its token logprobs
TokenLogprobs = list[tuple[int, float]]

FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
FALLBACK_SEED = 0
CHUNK_SECONDS = 30  # WhisperX merges VAD speech into chunks of at most Whisper's window
VAD_BLOCK_SECONDS = 120  # VAD runs block by block, so a client that leaves stops it within a block
VAD_ONSET, VAD_OFFSET = 0.500, 0.363  # WhisperX's defaults, passed to it at load and kept here


@dataclass
class LoadedWhisper:
    """One loaded WhisperX pipeline with what this service keeps beside it: its segment batcher, the
    lock of its VAD model (shared by the requests decoding at once) and the VAD thresholds."""

    pipe: Any
    batcher: SegmentBatcher
    vad_onset: float = VAD_ONSET
    vad_offset: float = VAD_OFFSET
    vad_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        self.batcher.close()


def check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("client disconnected")


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


def looks_failed(result: Any, sampling: Sampling, text_of: Callable[[list[int]], str], kwargs: dict) -> bool:
    """OpenAI's rule for a decode worth redoing at a higher temperature: too repetitive (compression
    ratio) or too unlikely (average log-probability), unless the segment is silence."""
    avg = avg_logprob(result, kwargs)
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


def avg_logprob(result: Any, kwargs: dict) -> float:
    """WhisperX's average log-probability of a result (its score, undoing the length penalty)."""
    length = len(result.sequences_ids[0])
    penalty = kwargs.get("length_penalty", 1.0) or 1.0
    return float(result.scores[0]) * (length**penalty) / (length + 1)


def token_logprobs(result: Any) -> TokenLogprobs:
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


def openai_logprobs(hf_tokenizer: Any, pairs: TokenLogprobs, eot: int) -> list[dict]:
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


def tokenizer_for(pipe: Any, language: str, task: str) -> Any:
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(pipe.model.hf_tokenizer, pipe.model.model.is_multilingual, task=task, language=language)


def features_of(pipe: Any, chunk: np.ndarray) -> np.ndarray:
    """The segment's log-mel features, padded to 30 s, as WhisperX's ``preprocess`` makes them."""
    from whisperx.audio import N_SAMPLES, log_mel_spectrogram

    n_mels = pipe.model.feat_kwargs.get("feature_size") or 80
    return np.asarray(log_mel_spectrogram(chunk, n_mels=n_mels, padding=N_SAMPLES - chunk.shape[0]), dtype=np.float32)


def call_key(pipe: Any, options: Any, sampling: Sampling, temperature: float, prompt: list[int]) -> CallKey:
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


def vad_chunks(whisper: LoadedWhisper, audio: np.ndarray, cancel: threading.Event | None = None) -> list[dict]:
    """WhisperX's VAD and chunk merging, as its ``transcribe`` does them, but block by block
    (``VAD_BLOCK_SECONDS``) with a cancellation check between blocks: speech turns are found per
    block, then merged into chunks of at most 30 s over the whole file (a turn cut at a block edge
    joins its other half in one chunk where both fit)."""
    from whisperx.audio import SAMPLE_RATE
    from whisperx.diarize import Segment as SegmentX
    from whisperx.vads import Pyannote, Vad
    from whisperx.vads.pyannote import Binarize

    vad = whisper.pipe.vad_model
    prepare = vad.preprocess_audio if isinstance(vad, Vad) else Pyannote.preprocess_audio
    block = VAD_BLOCK_SECONDS * SAMPLE_RATE
    turns = []
    for offset in range(0, audio.shape[0], block):
        check(cancel)
        with whisper.vad_lock:
            found = vad({"waveform": prepare(audio[offset : offset + block]), "sample_rate": SAMPLE_RATE})
        if not isinstance(found, list):  # pyannote: frame scores, binarised as WhisperX does
            binarize = Binarize(max_duration=CHUNK_SECONDS, onset=whisper.vad_onset, offset=whisper.vad_offset)
            found = [SegmentX(t.start, t.end, "UNKNOWN") for t in binarize(found).get_timeline()]
        shift = offset / SAMPLE_RATE
        turns += [SegmentX(t.start + shift, t.end + shift, t.speaker) for t in found]
    if not turns:
        return []
    return Vad.merge_chunks(turns, CHUNK_SECONDS, onset=whisper.vad_onset, offset=whisper.vad_offset)


class ChunkRequest:
    """One request's side of decoding: its prompt and decoding options, its chunks' features made
    when they are submitted, and the fallback and segment building for its results."""

    def __init__(
        self,
        whisper: LoadedWhisper,
        audio: np.ndarray,
        opts: Any,
        *,
        language: str,
        sampling: Sampling,
        cancel: threading.Event | None,
    ) -> None:
        pipe = whisper.pipe
        self.pipe, self.audio, self.batcher, self.sampling, self.cancel = pipe, audio, whisper.batcher, sampling, cancel
        self.tokenizer = tokenizer_for(pipe, language, opts.task)
        self.hf_tokenizer = pipe.model.hf_tokenizer
        self.eot = self.hf_tokenizer.token_to_id("<|endoftext|>")
        # logprobs come from greedy decoding: CTranslate2 returns no per-step logits for beam search
        greedy = opts.logprobs or getattr(opts, "greedy", False)
        self.options = replace(
            pipe.options, initial_prompt=opts.prompt, beam_size=1 if greedy else pipe.options.beam_size
        )
        o = self.options
        previous = self.tokenizer.encode(" " + o.initial_prompt.strip()) if o.initial_prompt is not None else []
        self.prompt = pipe.model.get_prompt(
            self.tokenizer, previous, without_timestamps=o.without_timestamps, prefix=o.prefix, hotwords=o.hotwords
        )
        self.kwargs = {"length_penalty": o.length_penalty}

    def submit(self, chunk: dict, temperature: float, first: bool = False) -> Future:
        from whisperx.audio import SAMPLE_RATE

        samples = self.audio[int(chunk["start"] * SAMPLE_RATE) : int(chunk["end"] * SAMPLE_RATE)]
        key = call_key(self.pipe, self.options, self.sampling, temperature, self.prompt)
        return self.batcher.submit(self, features_of(self.pipe, samples), self.prompt, key, self.cancel, first=first)

    def text_of(self, tokens: list[int]) -> str:
        return self.hf_tokenizer.decode([t for t in tokens if t < self.eot])

    def fails(self, result: Any) -> bool:
        return looks_failed(result, self.sampling, self.text_of, self.kwargs)

    def settle(self, chunk: dict, result: Any) -> tuple[Any, float]:
        """The chunk's result and its temperature, after OpenAI's fallback where it applies (each
        re-decode goes through the batcher ahead of the queue: this request waits on it)."""
        sampling = self.sampling
        if not (sampling.fallback and sampling.temperature == 0 and self.fails(result)):
            return result, sampling.temperature

        def redecode(temperature: float) -> Any:
            return wait(self.submit(chunk, temperature, first=True), self.cancel)

        return fall_back(result, redecode, sampling, self.fails, lambda r: avg_logprob(r, self.kwargs))

    def segment(self, i: int, chunk: dict, result: Any, temperature: float) -> dict:
        text = self.text_of(list(result.sequences_ids[0]))
        segment = verbose_segment(
            i,
            start=round(chunk["start"], 3),
            end=round(chunk["end"], 3),
            text=text,
            tokens=self.tokenizer.encode(text),
            temperature=temperature,
            avg_logprob=avg_logprob(result, self.kwargs),
            no_speech_prob=float(result.no_speech_prob),
        )
        if self.sampling.logprobs:
            segment["logprobs"] = openai_logprobs(self.hf_tokenizer, token_logprobs(result), self.eot)
        return segment


def fall_back(
    result: Any,
    redecode: Callable[[float], Any],
    sampling: Sampling,
    fails: Callable[[Any], bool],
    score: Callable[[Any], float],
) -> tuple[Any, float]:
    """Rising temperatures until a decode does not look failed; the best-scoring one otherwise."""
    best, best_temperature = result, 0.0
    for temperature in FALLBACK_TEMPERATURES:
        retry = redecode(temperature)
        sampling.count_redecode(temperature, 1)
        if score(retry) > score(best) or not fails(retry):
            best, best_temperature = retry, temperature
        if not fails(best):
            break
    return best, best_temperature


class Chunks(Protocol):
    """What the decoding loop needs of a request (``ChunkRequest``)."""

    sampling: Sampling
    cancel: threading.Event | None

    def submit(self, chunk: dict, temperature: float) -> Future: ...
    def settle(self, chunk: dict, result: Any) -> tuple[Any, float]: ...
    def segment(self, i: int, chunk: dict, result: Any, temperature: float) -> dict: ...


def decode_chunks(request: Chunks, chunks: list[dict], *, window: int, on_text: OnText | None) -> list[dict]:
    """Each chunk's segment, in order, with at most ``window`` chunks submitted and not yet taken."""
    pending: deque[tuple[dict, Future]] = deque()
    queued = iter(chunks)
    segments: list[dict] = []

    def top_up() -> None:
        while len(pending) < window and (chunk := next(queued, None)) is not None:
            pending.append((chunk, request.submit(chunk, request.sampling.temperature)))

    top_up()
    while pending:
        chunk, future = pending.popleft()
        result, temperature = request.settle(chunk, wait(future, request.cancel))
        top_up()  # the next chunk's features are made while this one's text goes out
        segments.append(request.segment(len(segments), chunk, result, temperature))
        if on_text is not None:
            on_text(segments[-1]["text"], segments[-1].get("logprobs"))
    return segments


def transcribe(
    whisper: LoadedWhisper,
    audio: np.ndarray,
    opts: Any,
    *,
    sampling: Sampling,
    window: int,
    on_text: OnText | None,
    cancel: threading.Event | None,
) -> tuple[str, list[dict]]:
    """The language (given, or detected on the first 30 s as WhisperX does) and the segments."""
    chunks = vad_chunks(whisper, audio, cancel)
    check(cancel)
    language = opts.language or (whisper.pipe.detect_language(audio) if chunks else "en")
    check(cancel)
    request = ChunkRequest(whisper, audio, opts, language=language, sampling=sampling, cancel=cancel)
    return language, decode_chunks(request, chunks, window=window, on_text=on_text)


def windows(audio: np.ndarray, rate: int, limit: int) -> list[dict]:
    """Live audio as chunks of at most ``limit`` samples (Whisper's window), each cut at the quietest
    100 ms of its last 5 s (the turn's speech is known; only where to cut is chosen)."""
    chunks, start, step = [], 0, rate // 10
    while audio.size - start > limit:
        tail = audio[start + limit - 5 * rate : start + limit]
        energy = [float(np.square(tail[i : i + step]).mean()) for i in range(0, tail.size - step + 1, step)]
        cut = start + limit - 5 * rate + int(np.argmin(energy)) * step + step // 2
        chunks.append({"start": start / rate, "end": cut / rate})
        start = cut
    chunks.append({"start": start / rate, "end": audio.size / rate})
    return chunks


def decode_live(
    whisper: LoadedWhisper, audio: np.ndarray, opts: Any, *, sampling: Sampling, cancel: threading.Event | None
) -> tuple[str, str, list[dict] | None]:
    """A live turn's text, language (given, or detected on its first 30 s) and, when asked, logprobs:
    its audio is all speech (the session's VAD decided that), so it is decoded in Whisper windows with
    no VAD of WhisperX's."""
    from whisperx.audio import N_SAMPLES, SAMPLE_RATE

    check(cancel)
    language = opts.language or whisper.pipe.detect_language(audio)
    request = ChunkRequest(whisper, audio, opts, language=language, sampling=sampling, cancel=cancel)
    chunks = windows(audio, SAMPLE_RATE, N_SAMPLES)
    segments = decode_chunks(request, chunks, window=len(chunks), on_text=None)
    text = "".join(s["text"] for s in segments).strip()
    logprobs = [item for s in segments for item in s.get("logprobs", [])] if sampling.logprobs else None
    return text, language, logprobs


def sequential(
    whisper: LoadedWhisper,
    audio: np.ndarray,
    opts: Any,
    *,
    sampling: Sampling,
    on_text: OnText | None,
    cancel: threading.Event | None,
) -> tuple[str, list[dict]]:
    """faster-whisper's own loop with Whisper's cross-attention word times (``ASR_WORD_TIMESTAMPS=whisper``):
    segment by segment, under the model's lock (it applies the same temperature and fallback rules)."""
    pipe = whisper.pipe
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
