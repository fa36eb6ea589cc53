"""The audio source contract, its user-facing error, and the bounded queue live sources share."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from streamer.messages import AudioChunk, SourceEvent


class SourceError(Exception):
    """A problem the user can fix (missing file, bad spec, unknown device): one line naming the thing."""


@runtime_checkable
class AudioSource(Protocol):
    """An async iterator of ``AudioChunk | StreamEnded``; each stream id ends with one ``StreamEnded``.

    ``stream_ids`` lists the ids known now (a PCM server: its connected clients). ``stats`` holds
    counters (samples repaired, chunks/frames dropped, ...) for the daemon's stats topic.
    """

    @property
    def stream_ids(self) -> list[str]: ...

    @property
    def stats(self) -> dict[str, int]: ...

    def __aiter__(self) -> AsyncIterator[SourceEvent]: ...

    async def aclose(self) -> None: ...


class DropOldestQueue:
    """Bounded event queue for live producers: when full, the oldest audio chunk is dropped (counted).

    ``put_nowait`` never waits (live audio: the oldest chunk goes); ``put`` waits for room instead, so a
    producer that can be slowed (a client pushing a recording) loses nothing. ``StreamEnded`` is never
    dropped: a stream's end must always reach the pipeline, so control events may exceed ``maxsize``
    (there is at most one per stream).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[SourceEvent | None] = deque()
        self._event = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._n_chunks = 0
        self.dropped_chunks = 0
        self.dropped_samples = 0
        self.dropped_by_stream: dict[str, int] = {}  # stream id -> samples dropped (until forgotten)

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: SourceEvent | None) -> None:
        """Enqueue; ``None`` is the end-of-source sentinel."""
        if isinstance(item, AudioChunk):
            if self._n_chunks >= self.maxsize:
                self._drop_oldest_chunk()
            self._n_chunks += 1
        self._items.append(item)
        self._event.set()
        if self._n_chunks >= self.maxsize:
            self._space.clear()

    async def put(self, item: SourceEvent | None) -> None:
        """Enqueue once there is room for another chunk: nothing is dropped, the producer waits."""
        while isinstance(item, AudioChunk) and self._n_chunks >= self.maxsize:
            self._space.clear()
            await self._space.wait()
        self.put_nowait(item)

    def forget(self, stream_id: str) -> int:
        """Samples of ``stream_id`` dropped so far; its entry is removed (a server sees many streams)."""
        return self.dropped_by_stream.pop(stream_id, 0)

    def _drop_oldest_chunk(self) -> bool:
        for idx, old in enumerate(self._items):
            if isinstance(old, AudioChunk):
                del self._items[idx]
                self._n_chunks -= 1
                self.dropped_chunks += 1
                self.dropped_samples += len(old.samples)
                sid = old.stream_id
                self.dropped_by_stream[sid] = self.dropped_by_stream.get(sid, 0) + len(old.samples)
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
                self._space.set()
        return item


__all__ = ["AudioSource", "DropOldestQueue", "SourceError"]
