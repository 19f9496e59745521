"""Text translation for realtime translation sessions whose target is not English (Whisper translates
speech to English itself): a multilingual sequence-to-sequence model that transformers loads by hub id
or local directory (``ASR_TRANSLATION_MODEL``; M2M100, MIT-licensed, 100 languages, by default). The
source text is a turn's transcript in the language Whisper detected."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from services.asr.decoding import check
from services.common.lifecycle import ManagedModel

LANGUAGE_TOKEN = re.compile(r"__[a-z]{2,3}__")  # M2M100's language tokens, should one come out
MAX_INPUT_TOKENS = 512  # a turn is at most 30 s of speech: far fewer tokens


class UnsupportedLanguage(ValueError):
    def __init__(self, language: str) -> None:
        super().__init__(f"the translation model does not know the language '{language[:16]}'")
        self.language = language


@dataclass(frozen=True)
class LoadedTranslator:
    tokenizer: Any
    model: Any
    device: str

    @property
    def languages(self) -> frozenset[str]:
        codes = getattr(self.tokenizer, "lang_code_to_id", None) or {}
        return frozenset(codes)


def load(name: str, *, cache_dir: str | None, token: str | None, device: str) -> LoadedTranslator:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, cache_dir=cache_dir, token=token)
    if not hasattr(tokenizer, "get_lang_id"):
        raise ValueError(f"{name}: not a multilingual model with language tokens (M2M100's tokenizer)")
    model = AutoModelForSeq2SeqLM.from_pretrained(name, cache_dir=cache_dir, token=token).to(device).eval()
    return LoadedTranslator(tokenizer, model, device)


def translate(
    loaded: LoadedTranslator,
    text: str,
    source: str,
    target: str,
    *,
    max_new_tokens: int,
    cancel: threading.Event | None = None,
) -> str:
    """``text`` (in ``source``) in ``target``; greedy decoding, bounded by ``max_new_tokens``."""
    import torch

    for language in (source, target):
        if language not in loaded.languages:
            raise UnsupportedLanguage(language)
    check(cancel)
    if source == target or not text.strip():
        return text
    tokenizer = loaded.tokenizer
    tokenizer.src_lang = source
    batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS).to(loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(
            **batch, forced_bos_token_id=tokenizer.get_lang_id(target), max_new_tokens=max_new_tokens, num_beams=1
        )
    check(cancel)
    decoded = tokenizer.batch_decode(out, skip_special_tokens=True)[0]
    return " ".join(LANGUAGE_TOKEN.sub(" ", decoded).split())


class Translator:
    """The text translation model of a predictor (``services.asr.live.session.Translator``)."""

    def __init__(self, model: ManagedModel[LoadedTranslator], max_new_tokens: int) -> None:
        self.model, self.max_new_tokens = model, max_new_tokens

    def languages(self) -> frozenset[str]:
        """The languages the model knows (it is loaded for that)."""
        with self.model.use() as loaded:
            return loaded.languages

    def translate(self, text: str, source: str, target: str, cancel: threading.Event) -> str:
        with self.model.exclusive() as loaded:
            return translate(loaded, text, source, target, max_new_tokens=self.max_new_tokens, cancel=cancel)
