"""The fast layer: the real gateway app in process (FastAPI's TestClient), fake predictors only at
the HTTP boundary. Each test costs milliseconds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.unit.fake_predictor import FakePredictor

KEYS = ["sk-good", "sk-other"]


class Gateway:
    def __init__(self, client: TestClient, asr: FakePredictor, tts: FakePredictor) -> None:
        self.client, self.asr, self.tts = client, asr, tts


@contextlib.contextmanager
def make_gateway(**settings) -> Iterator[Gateway]:
    asr = FakePredictor("asr", ["whisper-1", "turbo"])
    tts = FakePredictor("tts", ["tts-1", "tts-1-hd"])
    env = {"api_keys": [], **settings}
    app = create_app(GatewaySettings(**env), transports={"asr": asr.transport, "tts": tts.transport})
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Gateway(client, asr, tts)


@pytest.fixture
def gw() -> Iterator[Gateway]:
    with make_gateway() as gateway:
        yield gateway


@pytest.fixture
def keyed() -> Iterator[Gateway]:
    with make_gateway(api_keys=KEYS) as gateway:
        yield gateway


@pytest.fixture
def gateway_with() -> Iterator[Callable[..., Gateway]]:
    """A gateway with these settings (closed at the end of the test)."""
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(make_gateway(**settings))


WAV_HEADER = b"RIFF\x24\x00\x00\x00WAVEfmt "


def audio_file(size: int = 64) -> dict:
    return {"file": ("a.wav", WAV_HEADER + b"\x00" * size, "audio/wav")}
