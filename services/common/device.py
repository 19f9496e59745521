"""Which device the models run on, and what the accelerator holds (for /status and metrics)."""

from __future__ import annotations

import sys


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is visible, else ``cpu``; an explicit choice stays."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def accelerator_memory() -> dict[str, int]:
    """Bytes allocated and reserved by torch on each visible GPU (empty without CUDA). Never imports
    torch itself: called on the event loop, an import would wait for a worker thread's import."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "cuda") or not torch.cuda.is_available():
        return {}
    out = {}
    for index in range(torch.cuda.device_count()):
        out[f"cuda:{index}:allocated"] = int(torch.cuda.memory_allocated(index))
        out[f"cuda:{index}:reserved"] = int(torch.cuda.memory_reserved(index))
    return out
