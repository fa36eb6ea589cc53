"""A writer thread fed by a bounded queue: file and terminal writes never block the event loop.

When the queue is full the oldest *droppable* item is discarded and counted (a record; control
items such as "end of stream" are never dropped), so a stalled disk or terminal costs records,
not latency.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("emotrack.sinks")


class _Barrier:
    """Completes an asyncio future from the writer thread once everything before it is handled."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        self.loop = loop
        self.fut = fut

    def release(self) -> None:
        def done() -> None:
            if not self.fut.done():
                self.fut.set_result(None)

        self.loop.call_soon_threadsafe(done)


class BoundedWorker(Generic[T]):
    """One daemon thread calling ``handle(item)`` in FIFO order."""

    def __init__(
        self,
        name: str,
        handle: Callable[[T], None],
        maxsize: int,
        droppable: Callable[[T], bool] = lambda _: True,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"{name}: queue size must be >= 1, got {maxsize}")
        self.name = name
        self._handle = handle
        self._droppable = droppable
        self.maxsize = maxsize
        self._items: deque[T | _Barrier] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._n_droppable = 0
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.errors = 0
        self.handled = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def put(self, item: T) -> None:
        """Queue ``item``; never blocks. Over the bound, the oldest droppable item goes (counted)."""
        with self._cond:
            if self._stopping:
                self.dropped += 1
                return
            if self._droppable(item):
                if self._n_droppable >= self.maxsize:
                    self._drop_oldest()
                self._n_droppable += 1
            self._items.append(item)
            self._cond.notify()

    def _drop_oldest(self) -> None:
        for i, old in enumerate(self._items):  # almost always index 0
            if not isinstance(old, _Barrier) and self._droppable(old):
                del self._items[i]
                self._n_droppable -= 1
                self.dropped += 1
                return

    async def drain(self) -> None:
        """Wait until everything queued so far has been handled."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                return
            self._items.append(_Barrier(loop, fut))
            self._cond.notify()
        await fut

    async def stop(self, timeout: float = 10.0) -> None:
        """Handle what is queued (up to ``timeout``), then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                log.warning("%s: writer thread still busy after %.0fs; leaving it", self.name, timeout)

    @property
    def queued(self) -> int:
        return len(self._items)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                if not isinstance(item, _Barrier) and self._droppable(item):
                    self._n_droppable -= 1
            if isinstance(item, _Barrier):
                item.release()
                continue
            try:
                self._handle(item)
                self.handled += 1
            except Exception as exc:  # a sink error must not kill the writer thread
                self.errors += 1
                if self.errors <= 3 or self.errors % 1000 == 0:
                    log.error("%s: %s (%d errors so far)", self.name, exc, self.errors)
