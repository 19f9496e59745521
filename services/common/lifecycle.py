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
from typing import Annotated, Generic, Protocol, TypeVar

from pydantic import BeforeValidator

log = logging.getLogger(__name__)
T = TypeVar("T")

AFTER_REQUEST = 0.0
NEVER = -1.0
DEFERRED_RECHECK_SECONDS = 1.0  # after_request with requests waiting: look again this often


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
            raise ValueError(f"unload policy must be 'after_request', 'never' or idle seconds, got {value!r}") from None
    if seconds < 0 and seconds != NEVER:
        raise ValueError("idle seconds must be >= 0 (or -1 for never)")
    return seconds


UnloadPolicy = Annotated[float, BeforeValidator(parse_unload_policy)]


def release_accelerator_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # the gateway image has no torch
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelLoadError(RuntimeError):
    """The model could not be loaded. ``message`` names the model (safe to show to a client);
    the cause stays on ``__cause__`` for the log. ``permanent``: retrying cannot help (a missing,
    gated or broken model), as opposed to a transient cause such as memory or the network."""

    def __init__(self, model: str, cause: BaseException) -> None:
        self.model = model
        self.permanent = not _transient(cause)
        super().__init__(f"could not load model '{model}'")


def _transient(cause: BaseException) -> bool:
    """A memory, timeout or network failure anywhere in the cause chain (a hub outage arrives
    wrapped in the library's own error) can pass; anything else is permanent."""
    seen: set[int] = set()
    link: BaseException | None = cause
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (MemoryError, TimeoutError, ConnectionError)) or type(link).__name__ in TRANSIENT_NAMES:
            return True
        link = link.__cause__ or link.__context__
    return False


TRANSIENT_NAMES = frozenset(("OutOfMemoryError", "ConnectTimeout", "ReadTimeout", "ConnectionError", "ConnectError"))


class LifecycleObserver(Protocol):
    def loaded(self, name: str, seconds: float) -> None: ...
    def unloaded(self, name: str) -> None: ...


class ManagedModel(Generic[T]):
    """One lazily loaded model with reference counting, an idle-unload timer and the lock that
    serialises its use (``exclusive``).

    Two locks: ``_lock`` guards the counters and is only ever held for a few instructions, so
    ``status()`` (scrapes, ``/status``) never waits; ``_load_lock`` is held across a load or an
    unload, so a model is never loaded twice or loaded while the previous one is still being freed.
    ``keep_while`` (requests waiting for a place) defers an ``after_request`` unload: the next
    request would only load the model again."""

    def __init__(
        self,
        name: str,
        loader: Callable[[], T],
        unload_after: float,
        *,
        on_unload: Callable[[T], None] | None = None,
        observer: LifecycleObserver | None = None,
        keep_while: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self._loader = loader
        self._on_unload = on_unload
        self._observer = observer
        self._keep_while = keep_while
        self.unload_after = unload_after
        self._lock = threading.Lock()  # guards the fields below; never held across a load
        self._load_lock = threading.Lock()  # one load or unload at a time
        self.work_lock = threading.Lock()  # one request works on the model at a time
        self._model: T | None = None
        self._users = 0
        self._loading = False
        self._timer: threading.Timer | None = None
        self._generation = 0  # bumped by every acquire: a timer armed before it is stale
        self.loads = 0  # how many times the model was loaded (observability and tests)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def in_use(self) -> int:
        return self._users

    def status(self) -> dict:
        with self._lock:
            return {
                "loaded": self.loaded,
                "loading": self._loading,
                "in_use": self._users,
                "loads": self.loads,
                "unload_after": self.unload_after,
            }

    def _acquire(self) -> T:
        with self._lock:
            self._cancel_timer()
            self._generation += 1
            self._users += 1  # counted before loading: nothing unloads under a load
            model = self._model
        if model is not None:
            return model
        try:
            return self._load()
        except BaseException:
            self._release()
            raise

    def _load(self) -> T:
        with self._load_lock:
            with self._lock:
                if self._model is not None:  # another request loaded it while this one waited
                    return self._model
                self._loading = True
            started = time.perf_counter()
            try:
                model = self._loader()
            except Exception as exc:
                release_accelerator_memory()
                log.error("could not load %s: %s: %s", self.name, type(exc).__name__, exc)
                raise ModelLoadError(self.name, exc) from exc
            finally:
                with self._lock:
                    self._loading = False
            with self._lock:
                self._model = model
                self.loads += 1
        seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s", self.name, seconds)
        if self._observer is not None:
            self._observer.loaded(self.name, seconds)
        return model

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            generation = self._generation
            if self.unload_after == AFTER_REQUEST and not self._wanted():
                unload_now = True
            else:
                unload_now = False
                if self.unload_after != NEVER:
                    self._arm(generation)
        if unload_now:
            self._unload(generation)

    def _wanted(self) -> bool:
        return self._keep_while is not None and self._keep_while()

    def _arm(self, generation: int) -> None:
        """The idle timer (under ``_lock``): the idle time, or for ``after_request`` deferred by
        waiting requests, a short re-check."""
        delay = self.unload_after if self.unload_after > 0 else DEFERRED_RECHECK_SECONDS
        self._timer = threading.Timer(delay, self._idle_unload, args=(generation,))
        self._timer.daemon = True
        self._timer.start()

    @contextmanager
    def use(self) -> Iterator[T]:
        """Hold the model (it cannot unload) for the duration of a request or a stream."""
        model = self._acquire()
        try:
            yield model
        finally:
            self._release()

    @contextmanager
    def exclusive(self) -> Iterator[T]:
        """Hold the model and be the only one working on it (waiting for the model's lock)."""
        with self.use() as model, self.work_lock:
            yield model

    def unload(self) -> bool:
        """Unload now; refused (False) while a request holds the model."""
        with self._lock:
            if self._users:
                return False
            self._cancel_timer()
            generation = self._generation
        return self._unload(generation) or self._model is None

    @property
    def timer_pending(self) -> bool:
        return self._timer is not None

    def _idle_unload(self, generation: int) -> None:
        with self._lock:
            # a timer that fired while a reuse waited for the lock is stale: the reuse re-armed it
            if generation != self._generation or self._users:
                return
            self._timer = None
            if self.unload_after == AFTER_REQUEST and self._wanted():
                self._arm(generation)
                return
        self._unload(generation)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _unload(self, generation: int) -> bool:
        """Free the model unless it was used since ``generation``; the freeing (the unload hook, the
        garbage collector, the CUDA cache) runs outside ``_lock``."""
        with self._load_lock:
            with self._lock:
                if self._model is None or self._users or generation != self._generation:
                    return False
                model, self._model = self._model, None
            if self._on_unload is not None:
                self._on_unload(model)
            del model
            release_accelerator_memory()
        log.info("unloaded %s", self.name)
        if self._observer is not None:
            self._observer.unloaded(self.name)
        return True
