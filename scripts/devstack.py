"""Run the three services as local processes on loopback: used by ``make run`` and by the tests.

Each service is ``python -m services.<name>`` with its settings in the environment. Start-up
polls ``/healthz`` (never a fixed sleep) and fails fast if a process dies; ``stop`` sends SIGTERM
and, after a grace period, SIGKILL.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(threads: int, offline: bool, root: Path = ROOT) -> dict[str, str]:
    """Thread count per model process (1 on 2-core machines), no pyannote telemetry, NLTK data
    from the local model directory, and with ``offline`` no hub look-ups at all (tests)."""
    env = {
        "PYANNOTE_METRICS_ENABLED": "false",
        "NLTK_DATA": str(root / ".models" / "nltk_data"),
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "COQUI_TOS_AGREED": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if offline:
        env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """For ``preexec_fn``: the service gets SIGTERM (and drains) when the process that started it dies,
    however it died. Each service runs in a session of its own (a Ctrl-C reaches only ``make run``,
    which stops them in order), so without this a killed ``make run`` left them holding their ports."""
    parent, prctl = os.getpid(), ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork

    def arm() -> None:  # in the child, between fork and exec: one system call, no imports, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


@dataclass
class Service:
    name: str
    module: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path | None = None) -> None:
        env = os.environ | self.env
        if log_dir is None:  # interactive: prefix every line with the service name
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a system call only (die_with_parent)
                text=True,
            )
            threading.Thread(target=self._relay, daemon=True).start()
            return
        self.log_path = log_dir / f"{self.name}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a system call only (die_with_parent)
            )

    def _relay(self) -> None:
        for line in self.process.stdout or ():
            sys.stdout.write(f"{self.name:>7} | {line}")
            sys.stdout.flush()

    @property
    def process(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not healthy after {timeout} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def local_stack(
    asr_env: dict[str, str],
    tts_env: dict[str, str],
    gateway_env: dict[str, str],
    *,
    gateway_port: int | None = None,
    threads: int = 1,
    offline: bool = True,
) -> list[Service]:
    base = base_env(threads, offline)
    asr = Service("asr", "services.asr", free_port())
    tts = Service("tts", "services.tts", free_port())
    gw = Service("gateway", "services.gateway", gateway_port or free_port())
    asr.env = base | {"ASR_HOST": "127.0.0.1", "ASR_HTTP_PORT": str(asr.port), "ASR_THREADS": str(threads)} | asr_env
    tts.env = base | {"TTS_HOST": "127.0.0.1", "TTS_HTTP_PORT": str(tts.port), "TTS_THREADS": str(threads)} | tts_env
    gw.env = (
        base
        | {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(gw.port),
            "GATEWAY_ASR_URL": asr.url,
            "GATEWAY_TTS_URL": tts.url,
        }
        | gateway_env
    )
    return [asr, tts, gw]


def run_forever(services: list[Service]) -> None:
    """``make run``: start everything, relay logs, stop all three on Ctrl-C or if one dies."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        *predictors, gw = services
        for svc in predictors:
            svc.start()
        for svc in predictors:  # the public port opens only once the backends answer
            svc.wait_healthy()
        gw.start()
        gw.wait_healthy()
        print(f"speech-stack ready: {gw.url}/v1 (docs: {gw.url}/docs); Ctrl-C stops all three", flush=True)
        while not stop.wait(0.5):
            dead = [s.name for s in services if s.process.poll() is not None]
            if dead:
                print(f"{', '.join(dead)} exited; stopping the stack", flush=True)
                break
    finally:
        for svc in reversed(services):
            svc.stop()
        print("speech-stack stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the stack locally on loopback.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "5148")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "2")))
    args = parser.parse_args()
    whisper = str(ROOT / ".models" / "faster-whisper-base")
    asr_env = {
        "ASR_MODELS": os.environ.get("ASR_MODELS", f'{{"whisper-1": "{whisper}", "turbo": "{whisper}"}}'),
        "ASR_UNLOAD_POLICY": os.environ.get("ASR_UNLOAD_POLICY", "after_request"),
    }
    services = local_stack(
        asr_env, {}, {}, gateway_port=args.port, threads=args.threads, offline=os.environ.get("HF_HUB_OFFLINE") == "1"
    )
    run_forever(services)


if __name__ == "__main__":
    main()
