"""Model lifetime shared by the ASR and TTS predictors.

A ``ManagedModel`` owns one heavy object. ``use()`` loads it lazily under a lock, counts the
requests (or streams) holding it, and applies the unload policy when the last one lets go:
``after_request`` unloads at once, ``never`` keeps it, a number of seconds unloads after that idle
time. Unloading is refused while the model is in use. After an unload the garbage collector runs
and, where CUDA is present, its cache is emptied.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Generic, TypeVar

from pydantic import BeforeValidator

log = logging.getLogger(__name__)
T = TypeVar("T")

AFTER_REQUEST = 0.0
NEVER = -1.0


def parse_unload_policy(value: object) -> float:
    """``after_request`` -> 0, ``never`` -> -1, ``"300"``/300 -> 300 idle seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() in ("after_request", "0"):
        return AFTER_REQUEST
    elif isinstance(value, str) and value.strip().lower() == "never":
        return NEVER
    else:
        try:
            seconds = float(str(value))
        except ValueError:
            raise ValueError(
                f"unload policy must be 'after_request', 'never' or idle seconds, got {value!r}"
            ) from None
    if seconds < 0 and seconds != NEVER:
        raise ValueError("idle seconds must be >= 0 (or -1 for never)")
    return seconds


UnloadPolicy = Annotated[float, BeforeValidator(parse_unload_policy)]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is visible, else ``cpu``; an explicit choice stays."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def release_accelerator_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # the gateway image has no torch
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the model and the cause."""


class ManagedModel(Generic[T]):
    """One lazily loaded model with reference counting and an idle-unload timer."""

    def __init__(self, name: str, loader: Callable[[], T], unload_after: float,
                 on_unload: Callable[[T], None] | None = None) -> None:
        self.name = name
        self._loader = loader
        self._on_unload = on_unload
        self.unload_after = unload_after
        self._lock = threading.Lock()
        self._model: T | None = None
        self._users = 0
        self._timer: threading.Timer | None = None
        self.loads = 0  # how many times the model was loaded (observability and tests)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def in_use(self) -> int:
        return self._users

    def status(self) -> dict:
        return {"loaded": self.loaded, "in_use": self._users, "loads": self.loads,
                "unload_after": self.unload_after}

    def _acquire(self) -> T:
        with self._lock:
            self._cancel_timer()
            if self._model is None:
                started = time.perf_counter()
                try:
                    self._model = self._loader()
                except Exception as exc:  # noqa: BLE001 - any loader failure is reported the same way
                    release_accelerator_memory()
                    raise ModelLoadError(f"could not load model '{self.name}': {exc}") from exc
                self.loads += 1
                log.info("loaded %s in %.2f s", self.name, time.perf_counter() - started)
            self._users += 1
            return self._model

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            if self.unload_after == AFTER_REQUEST:
                self._unload_locked()
            elif self.unload_after > 0:
                self._timer = threading.Timer(self.unload_after, self._idle_unload)
                self._timer.daemon = True
                self._timer.start()

    @contextmanager
    def use(self) -> Iterator[T]:
        """Hold the model for the duration of a request or a stream."""
        model = self._acquire()
        try:
            yield model
        finally:
            self._release()

    def unload(self) -> bool:
        """Unload now; refused (False) while a request holds the model."""
        with self._lock:
            if self._users:
                return False
            self._cancel_timer()
            self._unload_locked()
            return True

    def _idle_unload(self) -> None:
        with self._lock:
            if not self._users:
                self._unload_locked()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _unload_locked(self) -> None:
        if self._model is None:
            return
        model, self._model = self._model, None
        if self._on_unload is not None:
            self._on_unload(model)
        del model
        release_accelerator_memory()
        log.info("unloaded %s", self.name)
