"""Bridge a blocking producer (model work in a worker thread) to an async iterator for a response."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

Producer = Callable[[Callable[[Any], None], threading.Event], None]
_running: set[asyncio.Task] = set()  # producers still finishing after their consumer left


async def iterate_in_thread(produce: Producer, slots: asyncio.Semaphore) -> AsyncIterator[Any]:
    """Run ``produce(emit, cancel)`` in a thread (bounded by ``slots``) and yield what it emits.

    An exception raised by the producer is re-raised here, in order. When the consumer stops
    early (the client disconnected), ``cancel`` is set so the producer can stop between chunks.
    """
    loop, queue, cancel = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
    done = object()

    def emit(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    async def work() -> None:
        try:
            async with slots:
                await asyncio.to_thread(produce, emit, cancel)
        except Exception as exc:  # noqa: BLE001 - re-raised in the consumer
            queue.put_nowait(exc)
        queue.put_nowait(done)

    task = asyncio.create_task(work())
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        cancel.set()
