"""Model work in worker threads, tied to the request that asked for it.

- ``ClientWatch`` notices the client leaving (after the body has been read, the next ASGI message
  is the disconnect) and sets a ``threading.Event`` the model code checks between batches/chunks.
- ``run_in_worker`` waits for an admission place, runs one call in a thread and returns its result.
- ``stream_from_worker`` runs a producer in a thread and yields what it emits, in order.
Either way the admission place is given back when the thread has really finished, and the thread
runs in the request's context (its log lines carry the request id).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.types import Receive

from services.common.admission import Ticket

T = TypeVar("T")
Emit = Callable[[Any], None]


class Cancelled(RuntimeError):
    """Raised by model code at its next check once ``cancel`` is set: the work stopped early."""


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


class ClientWatch:
    def __init__(self, receive: Receive) -> None:
        self.cancel = threading.Event()
        self._gone = asyncio.Event()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.cancel.set()
        self._gone.set()

    async def race(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the client leaves first (then ``ClientGone``; the awaitable is
        cancelled, which for a shielded thread future only stops the waiting)."""
        work = asyncio.ensure_future(awaitable)
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            raise ClientGone
        return work.result()

    def close(self) -> None:
        self._task.cancel()


def _in_thread(fn: Callable[[], T], ticket: Ticket, on_stopped: Callable[[], None] | None) -> asyncio.Future[T]:
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, contextvars.copy_context().run, fn)

    def finished(done: asyncio.Future) -> None:
        ticket.done()
        if not done.cancelled() and isinstance(done.exception(), Cancelled) and on_stopped is not None:
            on_stopped()  # (the exception is retrieved: a stop for a client that left is not an error)

    future.add_done_callback(finished)
    return future


async def run_in_worker(
    fn: Callable[[threading.Event], T], ticket: Ticket, watch: ClientWatch, on_stopped: Callable[[], None] | None = None
) -> T:
    """Wait for a place, run ``fn(cancel)`` in a thread. The ticket is always closed."""
    try:
        await watch.race(ticket.start())
        future = _in_thread(lambda: fn(watch.cancel), ticket, on_stopped)
    except BaseException:
        ticket.done()
        raise
    try:
        return await watch.race(asyncio.shield(future))
    except BaseException:
        watch.cancel.set()  # client gone or server shutting down: stop the thread at its next check
        raise


async def stream_from_worker(
    produce: Callable[[Emit, threading.Event], None],
    ticket: Ticket,
    watch: ClientWatch,
    on_stopped: Callable[[], None] | None = None,
) -> AsyncGenerator[Any, None]:
    """Wait for a place, run ``produce(emit, cancel)`` in a thread and yield what it emits; an
    exception in the producer is raised here, after the items before it. When the consumer stops
    early (the client left), ``cancel`` is set so the producer stops at its next item."""
    loop, done = asyncio.get_running_loop(), object()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def emit(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            produce(emit, watch.cancel)
        except Cancelled:
            emit(done)
            raise  # counted by ``_in_thread``
        except Exception as exc:  # noqa: BLE001 - re-raised in the consumer, in order
            emit(exc)
        emit(done)

    try:
        await watch.race(ticket.start())
        _in_thread(run, ticket, on_stopped)
    except BaseException:
        ticket.done()
        raise
    try:
        while (item := await watch.race(queue.get())) is not done:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        watch.cancel.set()
