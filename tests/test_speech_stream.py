"""Speech fed by a text stream and word timings against the real stack (tiny VITS, Whisper base with
the tiny wav2vec2 aligner): an LLM-like client on WS /v1/audio/speech/stream hears its first sentence
before it has finished writing, every sentence once and in order, in PCM that decodes to the length
the same text has through POST, and a second utterance in the same session; word timings on POST
(JSON and SSE) and on the WebSocket, one per word, in order, inside the audio; and, with Whisper's own
aligner (ASR_WORD_TIMESTAMPS=whisper), each word timed in espeak-ng speech where a transcription of the
same audio finds it."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from difflib import SequenceMatcher
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.sync.client import connect

from scripts.devstack import local_stack
from services.common import v2wire
from tests.conftest import start, whisper_models
from tests.support.espeak import speak
from tests.support.text import normalize

SENTENCES = [
    "The train to the city leaves at nine.",
    "Please bring a warm coat and an umbrella.",
    "We will meet again at the station afterwards.",
]


def stream_url(gateway_url: str) -> str:
    return gateway_url.replace("http://", "ws://") + "/v1/audio/speech/stream"


class Listener:
    """Every frame the server sends, with the time it arrived, read on a thread."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[tuple[float, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for message in self.ws:
            frame = message if isinstance(message, bytes) else json.loads(message)
            self.frames.append((time.monotonic(), frame))

    def wait_for(self, kind: str, count: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while sum(isinstance(f, dict) and f["type"] == kind for _, f in self.frames) < count:
            assert time.monotonic() < deadline, f"no {kind}: {[f for _, f in self.frames if isinstance(f, dict)]}"
            time.sleep(0.02)

    def events(self) -> list[dict]:
        return [f for _, f in self.frames if isinstance(f, dict)]


def llm_stream(ws: Any, text: str) -> float:
    """2 to 4 characters per message, 20 ms apart, as a language model writes; returns when it ended."""
    rng = np.random.default_rng(7)
    i = 0
    while i < len(text):
        step = int(rng.integers(2, 5))
        ws.send(json.dumps({"type": "input.text", "text": text[i : i + step]}))
        i += step
        time.sleep(0.02)
    return time.monotonic()


def post_pcm_seconds(gateway_url: str, text: str) -> float:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    r = httpx.post(f"{gateway_url}/v1/audio/speech", json=body, timeout=120)
    assert r.status_code == 200
    return len(r.content) / 2 / int(r.headers["x-sample-rate"])


def test_an_llm_stream_is_spoken_sentence_by_sentence_while_it_is_written(gateway_url):
    config = {"type": "session.config", "model": "tts-1", "voice": "alloy", "response_format": "pcm",
              "stream_audio": True, "split_granularity": "sentence"}  # fmt: skip
    post_pcm_seconds(gateway_url, SENTENCES[0])  # the model is loaded: this measures streaming, not a load
    with connect(stream_url(gateway_url), max_size=None) as ws:
        listener = Listener(ws)
        ws.send(json.dumps(config))
        written = llm_stream(ws, " ".join(SENTENCES))
        ws.send(json.dumps({"type": "input.done"}))
        listener.wait_for("session.done")
        ws.send(json.dumps({"type": "input.text", "text": "And one more."}))
        ws.send(json.dumps({"type": "input.done"}))
        listener.wait_for("session.done", 2)
        ws.send(json.dumps({"type": "session.close"}))
    first_audio = next(t for t, f in listener.frames if isinstance(f, bytes))
    assert first_audio < written  # the first sentence was heard before the text was finished
    events = listener.events()
    starts = [e for e in events if e["type"] == "audio.start"]
    assert [e["sentence_text"] for e in starts] == [*SENTENCES, "And one more."]  # each once, in order
    assert [(e["utterance_index"], e["sentence_index"]) for e in starts] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    done = [e for e in events if e["type"] == "session.done"]
    assert done == [{"type": "session.done", "utterance_index": 0, "total_sentences": 3},
                    {"type": "session.done", "utterance_index": 1, "total_sentences": 1}]  # fmt: skip
    # each sentence's PCM: the bytes between its audio.start and audio.done, as long as POST makes it
    units: list[bytearray] = []
    for _, frame in listener.frames:
        if isinstance(frame, dict) and frame["type"] == "audio.start":
            units.append(bytearray())
        elif isinstance(frame, bytes):
            units[-1] += frame
    totals = [e["total_bytes"] for e in events if e["type"] == "audio.done"]
    assert [len(u) for u in units] == totals and not any(e.get("error") for e in events)
    rate = starts[0]["sample_rate"]
    for text, pcm in zip([*SENTENCES, "And one more."], units, strict=True):
        seconds = np.frombuffer(bytes(pcm), "<i2").size / rate
        assert seconds == pytest.approx(post_pcm_seconds(gateway_url, text), rel=0.35), text


def words_of(text: str) -> list[str]:
    return text.split()


def check_timings(words: list[dict], text: str, duration: float, start: str = "start", end: str = "end") -> None:
    """One entry per word of the input, in order, each inside the audio."""
    assert [w["word"] for w in words] == words_of(text)
    starts = [w[start] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w[start] <= w[end] <= duration for w in words), words


def test_word_timings_on_post_whole_and_sse(gateway_url):
    text = " ".join(SENTENCES[:2])
    body = {"model": "tts-1", "voice": "alloy", "input": text, "word_timestamps": True}
    whole = httpx.post(f"{gateway_url}/v1/audio/speech", json=body | {"response_format": "wav"}, timeout=120)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/json"
    doc = whole.json()
    audio = base64.b64decode(doc["audio"])
    samples, rate = sf.read(io.BytesIO(audio), dtype="float32")
    assert doc["duration"] == pytest.approx(samples.size / rate, abs=0.05)
    check_timings(doc["words"], text, doc["duration"])
    second_starts = doc["words"][len(words_of(SENTENCES[0]))]["start"]
    assert second_starts >= post_pcm_seconds(gateway_url, SENTENCES[0]) * 0.6  # offset by the first sentence
    sse = httpx.post(f"{gateway_url}/v1/audio/speech", json=body | {"stream_format": "sse"}, timeout=120)
    payloads = [json.loads(line[6:]) for line in sse.text.split("\n") if line.startswith("data: ")]
    per_event = [[w["word"] for w in p["words"]] for p in payloads if p["type"] == "speech.audio.delta" and p["words"]]
    assert per_event == [words_of(SENTENCES[0]), words_of(SENTENCES[1])]
    assert payloads[-1]["type"] == "speech.audio.done"


def test_word_timings_on_the_websocket(gateway_url):
    config = {"type": "session.config", "voice": "alloy", "response_format": "pcm", "stream_audio": True,
              "split_granularity": "sentence", "word_timestamps": True}  # fmt: skip
    with connect(stream_url(gateway_url), max_size=None) as ws:
        listener = Listener(ws)
        ws.send(json.dumps(config))
        ws.send(json.dumps({"type": "input.text", "text": " ".join(SENTENCES[:2])}))
        ws.send(json.dumps({"type": "input.done"}))
        listener.wait_for("session.done")
    chunks = [e for e in listener.events() if e["type"] == "audio.chunk"]
    finals = [c for c in chunks if c["timestamps"] is not None]
    assert [c["sentence_index"] for c in finals] == [0, 1]
    for sentence, final in zip(SENTENCES[:2], finals, strict=True):
        check_timings(final["timestamps"], sentence, final["chunk_end_ms"], "start_ms", "end_ms")
        audio = b"".join(
            base64.b64decode(c["audio_b64"]) for c in chunks if c["sentence_index"] == final["sentence_index"]
        )
        assert final["chunk_end_ms"] == len(audio) // 2 * 1000 // final["sample_rate"]


# -- Whisper's own aligner ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def whisper_aligner(workdir):
    asr = local_stack(  # the ASR predictor alone
        asr_env={"ASR_MODELS": whisper_models(), "ASR_UNLOAD_POLICY": "never", "ASR_WORD_TIMESTAMPS": "whisper"},
        tts_env={},
        gateway_env={},
    )[0]
    start([asr], workdir / "logs" / "whisper-aligner")
    yield asr.url
    asr.stop()


def infer(url: str, audio: bytes, parameters: dict) -> dict:
    header = v2wire.InferRequestHeader("test-align", parameters)
    header.binary_inputs = [v2wire.BinaryInput.bytes_elements("audio", [len(audio)])]
    head = header.encode()
    body = head + v2wire.element_prefix(len(audio)) + audio
    r = httpx.post(
        f"{url}/v2/models/asr/infer", content=body, headers=v2wire.request_headers(head, len(body)), timeout=300
    )
    assert r.status_code == 200, r.text
    raw = v2wire.decode_response(r.content, r.headers)["result"].raw or b""
    return json.loads(raw[4:])


def test_whisper_times_each_word_where_a_transcription_finds_it(whisper_aligner, workdir):
    text = "Please bring a warm coat and an umbrella to the station."
    wav = speak(text, workdir / "aligned.wav").read_bytes()
    aligned = infer(whisper_aligner, wav, {"model": "whisper-1", "task": "align", "text": text, "language": "en"})
    check_timings(aligned["words"], text, aligned["duration"])
    heard = infer(whisper_aligner, wav, {"model": "whisper-1", "language": "en", "word_timestamps": True})
    found = [w for s in heard["segments"] for w in s["words"]]
    # the words the transcription heard as written (it may hear "and umbrella" for "an umbrella")
    matcher = SequenceMatcher(None, [normalize(w["word"]) for w in aligned["words"]],
                              [normalize(w["word"]) for w in found], autojunk=False)  # fmt: skip
    pairs = [(a + k, b + k) for a, b, size in matcher.get_matching_blocks() for k in range(size)]
    assert len(pairs) >= 0.8 * len(words_of(text)), heard["text"]
    for i, j in pairs:
        timed, transcribed = aligned["words"][i], found[j]
        assert timed["start"] == pytest.approx(transcribed["start"], abs=0.3), (timed, transcribed)
        assert timed["end"] == pytest.approx(transcribed["end"], abs=0.4), (timed, transcribed)
    refused = httpx.post(f"{whisper_aligner}/v2/models/asr/infer", timeout=60)
    assert refused.status_code == 400
