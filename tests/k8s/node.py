"""The real single-node cluster of tools/node (containerd, kubelet, kube-proxy, CoreDNS, KServe)
for the end-to-end chart test: started and stopped by the same scripts as `make cluster-up` /
`make cluster-down`, with its state and logs in a pytest tmp dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.k8s.tools import ROOT, run, tool, venv_tool

IMAGES_ENV = Path(os.environ.get("IMAGES_CACHE", Path.home() / ".cache" / "speech-stack" / "images")) / "images.env"
NODE_NAME = "speech-node"


def built_images() -> dict[str, str]:
    """name -> image of tools/images/build.sh; fails (never skips) when `make images` has not run."""
    images = dict(line.split("=", 1) for line in IMAGES_ENV.read_text().split()) if IMAGES_ENV.exists() else {}
    missing = {"gateway", "asr", "tts", "pause"} - images.keys()
    assert not missing, f"images {sorted(missing)} not built: run `make images` ({IMAGES_ENV})"
    return images


class RealNode:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.kubeconfig = state / "pki" / "admin.kubeconfig"
        self.env = os.environ | {
            "NODE_DIR": str(state),
            "KUBECTL": venv_tool("kubectl"),
            "K8S_TOOLS_BIN": str(Path(tool("helm")).parent),
        }
        self.forwards: list[subprocess.Popen] = []
        self.images: dict[str, str] = {}  # the images the chart installs (set by the test fixture)
        self.certificate: Any = None  # the Ingress's TLS certificate (tests.k8s.tls, set by the fixture)
        self.namespaces: list[str] = []  # the tests' namespaces, whose pods' logs are kept at the end

    def _script(self, name: str, timeout: float) -> subprocess.CompletedProcess:
        with (self.state / "logs" / f"{name}.out").open("w") as out:
            return subprocess.run(
                [str(ROOT / "tools" / "node" / f"{name}.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )

    def up(self) -> None:
        (self.state / "logs").mkdir(parents=True, exist_ok=True)
        if self._script("up", timeout=1800).returncode != 0:
            raise AssertionError("tools/node/up.sh failed:\n" + self.tail("up.out", 40))

    def down(self) -> None:
        self.stop_forwards()
        self._script("down", timeout=600)

    def tail(self, log: str, lines: int = 30) -> str:
        path = self.state / "logs" / log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run(venv_tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args, input=input, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def helm(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run(tool("helm"), "--kubeconfig", str(self.kubeconfig), *args, timeout=timeout)

    def wait(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(1)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def port_forward(self, target: str, namespace: str, port: int) -> int:
        """`kubectl port-forward <target> :<port>` (a free local port); returns the local port."""
        log = (self.state / "logs" / f"port-forward-{len(self.forwards)}.log").open("w")
        proc = subprocess.Popen(
            [
                venv_tool("kubectl"),
                "--kubeconfig",
                str(self.kubeconfig),
                "port-forward",
                "-n",
                namespace,
                target,
                f":{port}",
                "--address",
                "127.0.0.1",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.forwards.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 5148"
        assert line.startswith("Forwarding from 127.0.0.1:"), f"port-forward: {line!r}"
        return int(line.split(":")[1].split()[0])

    def stop_forwards(self) -> None:
        for proc in self.forwards:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        self.forwards.clear()

    def dump(self, namespace: str) -> None:
        """Pods, events and every container's log into logs/, for a failed run."""
        out = self.state / "logs" / f"{namespace}-objects.txt"
        out.write_text(
            self.kubectl("describe", "pods,isvc,deploy,svc,pvc", "-n", namespace, check=False).stdout
            + self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        )
        for pod in self.get("pods", "-n", namespace)["items"]:
            name = pod["metadata"]["name"]
            (self.state / "logs" / f"pod-{name}.log").write_text(
                self.kubectl("logs", "-n", namespace, name, "--all-containers", "--tail=300", check=False).stdout
            )


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False
