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

    ``StreamEnded`` is never dropped: a stream's end must always reach the pipeline, so control events
    may exceed ``maxsize`` (there is at most one per stream).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[SourceEvent | None] = deque()
        self._event = asyncio.Event()
        self._n_chunks = 0
        self.dropped_chunks = 0
        self.dropped_samples = 0

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

    def _drop_oldest_chunk(self) -> bool:
        for idx, old in enumerate(self._items):
            if isinstance(old, AudioChunk):
                del self._items[idx]
                self._n_chunks -= 1
                self.dropped_chunks += 1
                self.dropped_samples += len(old.samples)
                return True
        return False

    async def get(self) -> SourceEvent | None:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        item = self._items.popleft()
        if isinstance(item, AudioChunk):
            self._n_chunks -= 1
        return item


__all__ = ["AudioSource", "DropOldestQueue", "SourceError"]
