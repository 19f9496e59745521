"""Sixteen official-SDK clients at once against the real stack with small queues: every answer is a
200 or a 429 with Retry-After, nothing is lost, and every service's /healthz keeps answering (its
latency under this load is a column of `make bench load`, not an assertion here)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

from tests.conftest import SENTENCES
from tests.support.text import normalize, wer

SENTENCE = SENTENCES[3]  # the weather
CLIENTS = 16
SECONDS = 20.0


def probe(urls: list[str], stop: threading.Event, failures: list[str], probes: dict[str, int]) -> None:
    """Ask every service's /healthz over and over; what goes wrong is collected for the test's own
    thread (an assertion in this thread would only be a warning)."""
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            for url in urls:
                try:
                    status = http.get(f"{url}/healthz").status_code
                except httpx.HTTPError as exc:
                    failures.append(f"{url}: {type(exc).__name__}")
                    continue
                probes[url] += 1
                if status != 200:
                    failures.append(f"{url}: HTTP {status}")
            time.sleep(0.05)


def test_sixteen_clients_get_200_or_429_and_health_stays_fast(stack, gateway_url, spoken):
    wav = spoken[SENTENCE]
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="x", max_retries=0, timeout=120)
    outcomes: list[tuple[str, int, str]] = []

    def worker(i: int) -> None:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            kind = "speech" if i % 4 == 3 else "transcription"
            try:
                if kind == "speech":
                    audio = client.audio.speech.create(
                        model="tts-1", voice="alloy", input="A short sentence.", response_format="wav"
                    )
                    outcomes.append((kind, 200, "RIFF" if audio.content[:4] == b"RIFF" else "bad audio"))
                else:
                    text = client.audio.transcriptions.create(model="whisper-1", file=wav.open("rb")).text
                    outcomes.append((kind, 200, normalize(text)))
            except openai.RateLimitError as err:
                outcomes.append((kind, 429, err.response.headers.get("retry-after", "")))
                time.sleep(0.2)
            except openai.APIStatusError as err:
                outcomes.append((kind, err.status_code, err.message))

    urls = [svc.url for svc in stack]
    failures: list[str] = []
    probes = dict.fromkeys(urls, 0)
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(urls, stop, failures, probes))
    prober.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(worker, range(CLIENTS)))
    finally:
        stop.set()
        prober.join()
    statuses = {status for _, status, _ in outcomes}
    assert statuses <= {200, 429}, [o for o in outcomes if o[1] not in (200, 429)][:5]
    assert 429 in statuses, "16 clients never filled a queue of 4"
    assert all(detail.isdigit() for _, status, detail in outcomes if status == 429), "429 without Retry-After"
    transcripts = [d for kind, s, d in outcomes if kind == "transcription" and s == 200]
    # real transcripts of the clip (a batched decode may hear one word differently: "wherever today")
    assert transcripts and all(wer([SENTENCE], [t]) <= 0.25 for t in transcripts), transcripts[:3]
    assert all(d == "RIFF" for kind, s, d in outcomes if kind == "speech" and s == 200)
    assert not failures, failures[:5]  # a blocked event loop times out (5 s) or refuses
    assert all(count > 10 for count in probes.values()), probes
