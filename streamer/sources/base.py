"""The audio source contract, its user-facing error, and the bounded queue live sources share."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from streamer.messages import AudioChunk, SourceEvent


class SourceError(Exception):
    """A problem the user can fix (missing file, bad spec, unknown device): one line naming the thing."""


@runtime_checkable
class AudioSource(Protocol):
    """An async iterator of ``AudioChunk | StreamEnded``; each stream id ends with one ``StreamEnded``.

    ``stream_ids`` lists the ids known now (a PCM server: its connected clients). ``stats`` holds
    counters (samples repaired, chunks/frames dropped, ...) for the daemon's stats topic.

    A source may also have ``offline: bool`` (absent = False): True when it reads as fast as the
    daemon takes its audio (an unpaced file, stdin), so the daemon holds it back instead of dropping
    its windows under load; live sources (microphones, paced files, sockets) keep drop-oldest.
    """

    @property
    def stream_ids(self) -> list[str]: ...

    @property
    def stats(self) -> dict[str, int]: ...

    def __aiter__(self) -> AsyncIterator[SourceEvent]: ...

    async def aclose(self) -> None: ...


class DropOldestQueue:
    """Bounded event queue for live producers: when full, the oldest audio chunk is dropped (counted).

    ``put_nowait`` never waits (live audio: the oldest chunk goes); ``put`` waits its turn for room
    instead (first come, first served, so one fast producer cannot starve the others), so a producer
    that can be slowed (a client pushing a recording) loses nothing. ``StreamEnded`` is never dropped:
    a stream's end must always reach the pipeline, so control events may exceed ``maxsize`` (there is
    at most one per stream), as may the chunks of producers woken by ``get`` (at most one each).
    """

    def __init__(self, maxsize: int, on_drop: Callable[[AudioChunk], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[SourceEvent | None] = deque()
        self._event = asyncio.Event()
        self._putters: deque[asyncio.Future[None]] = deque()  # producers waiting in ``put``, in order
        self._n_chunks = 0
        self.dropped_chunks = 0
        self.dropped_samples = 0
        self._on_drop = on_drop  # told of each dropped chunk (per-stream accounting, logging)

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: SourceEvent | None) -> None:
        """Enqueue; ``None`` is the end-of-source sentinel."""
        if isinstance(item, AudioChunk) and self._n_chunks >= self.maxsize:
            self._drop_oldest_chunk()
        self._append(item)

    async def put(self, item: SourceEvent | None) -> None:
        """Enqueue once it is this producer's turn and there is room: nothing is dropped."""
        if isinstance(item, AudioChunk) and (self._putters or self._n_chunks >= self.maxsize):
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._putters.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn in self._putters:
                    self._putters.remove(turn)
                elif self._n_chunks < self.maxsize:
                    self._wake_putter()  # the room it was given goes to the next in line
                raise
        self._append(item)

    def _append(self, item: SourceEvent | None) -> None:
        if isinstance(item, AudioChunk):
            self._n_chunks += 1
        self._items.append(item)
        self._event.set()

    def _wake_putter(self) -> None:
        while self._putters:
            turn = self._putters.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def _drop_oldest_chunk(self) -> bool:
        for idx, old in enumerate(self._items):
            if isinstance(old, AudioChunk):
                del self._items[idx]
                self._n_chunks -= 1
                self.dropped_chunks += 1
                self.dropped_samples += len(old.samples)
                if self._on_drop is not None:
                    self._on_drop(old)
                return True
        return False

    async def get(self) -> SourceEvent | None:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        item = self._items.popleft()
        if isinstance(item, AudioChunk):
            self._n_chunks -= 1
            if self._n_chunks < self.maxsize:
                self._wake_putter()
        return item


__all__ = ["AudioSource", "DropOldestQueue", "SourceError"]
