"""Cross-stream batched inference: ``workers`` engine threads sharing one bounded pending queue.

Overload policy depends on where a window comes from. Live input (microphones, paced files, sockets)
cannot wait: when ``max_pending`` live windows are queued the oldest live one is dropped (counted).
Offline input (unpaced files, stdin) can: ``submit_waiting`` holds its reader until the queue has
room (backpressure), so an offline window is never dropped, however many files are read at once.

Batching policy: a free worker takes up to ``max_batch`` pending windows, waiting at most ``max_wait_ms``
after the first one for the batch to fill. With several workers, engine calls overlap (ONNX Runtime's
``run`` is thread-safe and releases the GIL), so a small model whose single call cannot use every core
(one intra-op thread is the most efficient for it) still gets them all; the TensorRT backend serialises
calls on its one execution context. Each window is first brought to the engine's minimum length
(``engine.pad_to_min``, per the manifest's padding policy); windows are then grouped by exact length and
each group is one ``engine.infer`` call. Windows are never zero-padded to a common length, because
padding changes what a model pooling over time sees; in steady state all windows have the configured
window length, so a batch is one call, and only short utterance tails go in small calls of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streamer.messages import FloatArray, Scores, SpeechWindow

log = logging.getLogger(__name__)


class EngineResultLike(Protocol):
    @property
    def probabilities(self) -> Any: ...
    @property
    def vad(self) -> Any: ...


class EngineLike(Protocol):
    """What the batcher needs from ``engines.Engine``."""

    @property
    def labels(self) -> Sequence[str]: ...

    def infer(self, audio: FloatArray) -> Any: ...

    def pad_to_min(self, samples: FloatArray) -> FloatArray: ...


@dataclass(slots=True)
class BatcherStats:
    scored: int = 0
    dropped: int = 0  # oldest pending windows dropped under overload
    failed: int = 0  # windows whose engine call raised
    batches: int = 0
    calls: int = 0  # engine.infer calls (a batch with mixed lengths makes several)
    max_batch_seen: int = 0


_Item = tuple[SpeechWindow, "asyncio.Future[Scores | None]", bool]  # (window, future, may be dropped)


class BatcherClosed(RuntimeError):
    """``submit`` after ``drain``/``close``."""


class Batcher:
    """Scores windows from every stream in shared batches; ``submit`` returns a future per window."""

    def __init__(
        self,
        engine: EngineLike,
        max_batch: int = 32,
        max_wait_ms: float = 20.0,
        max_pending: int = 256,
        on_progress: Callable[[], None] | None = None,
        workers: int = 1,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_wait_ms < 0 or workers < 1:
            raise ValueError("max_batch, max_pending and workers must be >= 1 and max_wait_ms >= 0")
        self._engine = engine
        self._labels = list(engine.labels)
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_pending = max_pending
        self._on_progress = on_progress
        self._pending: deque[_Item] = deque()
        self._live_pending = 0  # queued windows that may be dropped
        self._room: asyncio.Semaphore | None = None  # queue slots for offline windows (made on first use)
        self._wakeup = asyncio.Event()
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emotrack-infer")
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._in_flight = 0
        self.stats = BatcherStats()

    @property
    def pending(self) -> int:
        """Windows submitted and not yet resolved (queued + in the engine now)."""
        return len(self._pending) + self._in_flight

    def start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._run(), name=f"emotrack-batcher-{i}") for i in range(self.workers)
            ]

    def submit(self, window: SpeechWindow, *, droppable: bool = True) -> asyncio.Future[Scores | None]:
        """Queue a live window; when ``max_pending`` live windows are queued the oldest of them
        resolves to None (dropped, counted). ``droppable=False`` is for ``submit_waiting`` only."""
        if self._closing:
            raise BatcherClosed("the batcher is draining; no new windows")
        self.start()
        fut: asyncio.Future[Scores | None] = asyncio.get_running_loop().create_future()
        if droppable:
            if self._live_pending >= self.max_pending:
                self._drop_oldest_live()
            self._live_pending += 1
        self._pending.append((window, fut, droppable))
        self._wakeup.set()
        return fut

    async def submit_waiting(self, window: SpeechWindow) -> asyncio.Future[Scores | None]:
        """Queue an offline window, first waiting (in FIFO order) until fewer than ``max_pending``
        offline windows are queued: the reader is held back instead of a window being dropped."""
        if self._closing:
            raise BatcherClosed("the batcher is draining; no new windows")
        if self._room is None:
            self._room = asyncio.Semaphore(self.max_pending)
        await self._room.acquire()
        try:
            return self.submit(window, droppable=False)
        except BaseException:
            self._room.release()
            raise

    def _drop_oldest_live(self) -> None:
        for i, (_, old, droppable) in enumerate(self._pending):
            if droppable:
                del self._pending[i]
                self._dequeued(droppable)
                self.stats.dropped += 1
                if not old.done():
                    old.set_result(None)
                return

    def _dequeued(self, droppable: bool) -> None:
        """A window left the queue (into a batch, dropped or cancelled): free its slot."""
        if droppable:
            self._live_pending -= 1
        elif self._room is not None:
            self._room.release()

    async def drain(self) -> None:
        """Stop accepting windows, score everything pending, then stop the worker and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._tasks:
            await asyncio.gather(*self._tasks)
            self._tasks = []
        self._executor.shutdown(wait=True)

    async def close(self) -> None:
        """Stop at once: pending windows resolve to None (counted as dropped)."""
        self._closing = True
        while self._pending:
            _, fut, droppable = self._pending.popleft()
            self._dequeued(droppable)
            self.stats.dropped += 1
            if not fut.done():
                fut.set_result(None)
        await self.drain()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._pending) < self.max_batch and not self._closing and self.max_wait > 0:
                deadline = time.monotonic() + self.max_wait
                while len(self._pending) < self.max_batch and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), left)
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            for _, _, droppable in batch:
                self._dequeued(droppable)
            live = [(w, f) for w, f, _ in batch if not f.cancelled()]
            if live:
                await self._score(live)

    async def _score(self, batch: list[tuple[SpeechWindow, asyncio.Future[Scores | None]]]) -> None:
        self.stats.batches += 1
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(batch))
        self._in_flight += len(batch)
        try:
            groups: dict[int, list[tuple[FloatArray, asyncio.Future[Scores | None]]]] = {}
            for window, fut in batch:
                audio = self._engine.pad_to_min(np.asarray(window.samples, dtype=np.float32))
                groups.setdefault(len(audio), []).append((audio, fut))
            loop = asyncio.get_running_loop()
            for items in groups.values():
                audio = np.stack([a for a, _ in items]).astype(np.float32, copy=False)
                self.stats.calls += 1
                try:
                    result = await loop.run_in_executor(self._executor, self._engine.infer, audio)
                    scores = self._to_scores(result, len(items))
                except Exception as exc:  # engine failure must not kill the daemon: count and go on
                    log.error("engine call failed for %d windows: %s", len(items), exc)
                    self.stats.failed += len(items)
                    for _, fut in items:
                        if not fut.done():
                            fut.set_result(None)
                    continue
                for (_, fut), s in zip(items, scores, strict=True):
                    if not fut.done():
                        fut.set_result(s)
                self.stats.scored += len(items)
                if self._on_progress is not None:
                    self._on_progress()
        finally:
            self._in_flight -= len(batch)

    def _to_scores(self, result: Any, n: int) -> list[Scores]:
        probs = getattr(result, "probabilities", None)
        vad = getattr(result, "vad", None)
        out: list[Scores] = []
        for i in range(n):
            p = (
                None
                if probs is None
                else {lab: float(v) for lab, v in zip(self._labels, probs[i], strict=True)}
            )
            v = None
            if vad is not None:
                row = vad[i]
                v = (float(row[0]), float(row[1]), float(row[2]))
            out.append(Scores(probabilities=p, vad=v))
        return out
