"""Session fixtures: tiny models built at test time, real services on free loopback ports."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from scripts.devstack import ROOT, Service, local_stack
from tests.support import tiny_models
from tests.support.espeak import speak

WHISPER = ROOT / ".models" / "faster-whisper-base"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please schedule a meeting with the design team on Thursday afternoon.",
    "Open source software lets teams build on the work of others.",
    "The weather today is sunny with a gentle breeze from the west.",
    "She bought three apples and a loaf of bread at the market.",
]


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech-stack")


@pytest.fixture(scope="session")
def tiny(workdir) -> dict[str, Path]:
    return tiny_models.build_all(workdir / "models")


@pytest.fixture(scope="session")
def dialog(workdir) -> Path:
    """Two espeak-ng voices taking turns, with a pause between them."""
    import numpy as np
    import soundfile as sf

    out = workdir / "dialog"
    out.mkdir()
    a = speak("Good morning, how are you doing today?", out / "a.wav", voice="en-us")
    b = speak("I am fine thank you, and the project is going well.", out / "b.wav", voice="en-gb+f3", rate=140)
    parts = [sf.read(a, dtype="float32")[0], np.zeros(12800, np.float32), sf.read(b, dtype="float32")[0]]
    sf.write(out / "dialog.wav", np.concatenate(parts), 16000)
    return out / "dialog.wav"


@pytest.fixture(scope="session")
def spoken(workdir) -> dict[str, Path]:
    """Each test sentence spoken by espeak-ng, 16 kHz mono WAV."""
    out = workdir / "audio"
    out.mkdir()
    return {text: speak(text, out / f"s{i}.wav") for i, text in enumerate(SENTENCES)}


def start(services: list[Service], log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for svc in services:
        svc.start(log_dir)
    try:
        for svc in services:
            svc.wait_healthy()
    except Exception:
        for svc in services:
            svc.stop()
        raise


def whisper_models(path: Path = WHISPER) -> str:
    return json.dumps({"whisper-1": str(path), "turbo": str(path)})


@pytest.fixture(scope="session")
def stack(workdir, tiny) -> Iterator[list[Service]]:
    """Real Whisper base (kept loaded) with tiny local alignment and diarization models,
    tiny multi-speaker VITS, and the gateway; small queues (4) and a 10-minute audio limit."""
    services = local_stack(
        asr_env={
            "ASR_MODELS": whisper_models(),
            "ASR_UNLOAD_POLICY": "never",
            "ASR_BATCH_SIZE": "4",
            "ASR_MAX_QUEUE": "4",
            "ASR_MAX_AUDIO_SECONDS": "600",
            "ASR_ALIGN_MODELS": json.dumps({"en": str(tiny["wav2vec2"])}),
            "ASR_DIARIZATION_MODEL": str(tiny["diarization"]),
        },
        tts_env={
            "TTS_MODEL": str(tiny["vits"]),
            "TTS_UNLOAD_POLICY": "never",
            "TTS_MAX_QUEUE": "4",
            "TTS_HOME": str(workdir / "tts-home"),
        },
        gateway_env={},
    )
    start(services, workdir / "logs" / "main")
    yield services
    for svc in reversed(services):
        svc.stop()


@pytest.fixture(scope="session")
def gateway_url(stack) -> str:
    return stack[-1].url


@pytest.fixture(scope="session")
def client(gateway_url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-test", max_retries=0, timeout=300)


def pytest_configure(config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
