"""Health under load: how long a predictor's /healthz takes while speech clients keep it busy, with the
model kept loaded (``never``) and with ``after_request`` (a load and an unload around every request,
the seed's default). A stalled event loop shows here first: a kubelet probing a stalled pod marks it
unready or restarts it."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import httpx

from bench.load import Run, synthesise
from scripts.devstack import local_stack
from tests.conftest import start
from tests.support import tiny_models

CLIENTS = 16


def probe(url: str, stop: threading.Event, seen: list[float]) -> None:
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            http.get(f"{url}/healthz")
            seen.append(time.perf_counter() - started)
            time.sleep(0.05)


def bench_health(tmp: Path, threads: int, seconds: float, table) -> None:
    vits = tiny_models.build_vits(tmp / "vits-health", ["alloy"])
    rows = []
    for policy in ("never", "after_request"):
        _, tts, gw = local_stack(  # no ASR predictor: speech only
            asr_env={},
            tts_env={
                "TTS_MODEL": str(vits),
                "TTS_UNLOAD_POLICY": policy,
                "TTS_MAX_QUEUE": "32",
                "TTS_HOME": str(tmp / f"tts-home-health-{policy}"),
            },
            gateway_env={},
            threads=threads,
        )
        start([tts, gw], tmp / f"logs-health-{policy}")
        try:
            Run(synthesise(gw.url), 1, 0.1).go()  # warm
            loads_before = httpx.get(f"{tts.url}/status").json()["model"]["loads"]
            seen: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=probe, args=(tts.url, stop, seen))
            prober.start()
            run = Run(synthesise(gw.url), CLIENTS, seconds)
            try:
                run.go()
            finally:
                stop.set()
                prober.join()
            loads = httpx.get(f"{tts.url}/status").json()["model"]["loads"] - loads_before
        finally:
            for svc in (gw, tts):
                svc.stop()
        p95 = statistics.quantiles(seen, n=20)[-1] if len(seen) >= 2 else float("nan")
        rows.append(
            [
                policy,
                str(len(run.latencies)),
                str(loads),
                f"{statistics.median(seen) * 1000:.1f}",
                f"{p95 * 1000:.1f}",
                f"{max(seen) * 1000:.0f}",
            ]
        )
    table(
        f"TTS /healthz while {CLIENTS} speech clients send back to back for {seconds:.0f} s (tiny VITS, "
        f"{threads} thread(s)), per unload policy",
        ["unload policy", "requests", "model loads", "healthz p50 ms", "p95 ms", "max ms"],
        rows,
    )
