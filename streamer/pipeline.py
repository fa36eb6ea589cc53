"""One stream's path: chunks → segmenter → batcher → ordered results → tracker → sinks.

Order: every segment event goes into a bounded FIFO together with its score future (windows) so the
consumer turns events into records in stream order, whatever order batches finish in. The FIFO applies
backpressure (``feed`` waits when ``max_in_flight`` events are outstanding) instead of dropping.

Overload: a live stream (``offline=False``: microphone, paced file, socket) cannot wait, so its
source's ring buffer and the batcher drop the oldest audio/windows, counted; a window lost that way
still reaches the tracker (as ``scores=None``) and is counted in its utterance's ``dropped``. An
offline stream (unpaced file, stdin) waits for the batcher instead (``Batcher.submit_waiting``), so
none of its windows is ever dropped, however many streams are read at once.

Silence: while no utterance is open, a silence tick is queued every ``silence_tick_s`` of audio so the
tracker can decay (or hold) the state and publish it; ticks ride the same FIFO, so they never overtake
the windows before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamer.inference import Batcher
from streamer.messages import (
    SAMPLE_RATE,
    AudioChunk,
    Scores,
    SegmentEvent,
    SpeechWindow,
    UtteranceEnded,
    UtteranceStarted,
)
from streamer.records import Record
from streamer.segmenter import Segmenter
from streamer.speechgate import WindowGate
from streamer.tracker import StreamTracker

log = logging.getLogger(__name__)

Emit = Callable[[Record], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Silence:
    end_sample: int
    wall_time: float


@dataclass(frozen=True, slots=True)
class _End:
    total_samples: int
    wall_time: float
    reason: str


_Item = tuple[SegmentEvent | _Silence | _End, "asyncio.Future[Scores | None] | None"]


@dataclass(slots=True)
class StreamStats:
    chunks: int = 0
    samples: int = 0
    windows: int = 0
    windows_scored: int = 0
    windows_dropped: int = 0
    windows_nonspeech: int = 0  # rejected by the window gate: not scored, no emotion
    utterances: int = 0
    records: int = 0


class StreamPipeline:
    """Feeds one stream's chunks through its segmenter and emits its records in order."""

    def __init__(
        self,
        stream_id: str,
        segmenter: Segmenter,
        tracker: StreamTracker,
        batcher: Batcher,
        emit: Emit,
        *,
        max_in_flight: int = 64,
        silence_tick_s: float = 1.0,
        publish_silence: bool = True,
        on_progress: Callable[[], None] | None = None,
        offline: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.segmenter = segmenter
        self.tracker = tracker
        self.batcher = batcher
        self._emit = emit
        self.offline = offline
        vad = segmenter.vad_cfg
        self._gate = WindowGate(vad.window_thresholds) if vad.window_gate else None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_in_flight)
        self._tick = max(1, round(silence_tick_s * SAMPLE_RATE))
        self._last_tick = 0
        self._on_progress = on_progress
        self._ended = False
        self.end_reason: str | None = None
        self.end_samples = 0  # the stream's audio at its end (samples the source emitted, dropped ones too)
        self._scored_any = False
        self._publish_silence = publish_silence
        self._position = 0
        self._last_wall = 0.0
        self.stats = StreamStats()
        self._consumer = asyncio.get_running_loop().create_task(self._consume(), name=f"stream-{stream_id}")

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def outstanding(self) -> int:
        """Events queued for this stream's consumer (windows awaiting scores included)."""
        return self._queue.qsize()

    async def feed(self, chunk: AudioChunk) -> None:
        if self._ended:
            return
        self.stats.chunks += 1
        self.stats.samples += len(chunk.samples)
        self._position = chunk.end_sample
        self._last_wall = chunk.wall_time + len(chunk.samples) / SAMPLE_RATE
        for event in self.segmenter.feed(chunk):
            await self._put(event)
        if not self.segmenter.in_utterance and chunk.end_sample - self._last_tick >= self._tick:
            self._last_tick = chunk.end_sample
            await self._queue.put((_Silence(chunk.end_sample, self._last_wall), None))

    async def end(
        self, total_samples: int | None = None, wall_time: float | None = None, reason: str = "eof"
    ) -> None:
        """Close the open utterance (its last windows are scored), then the stream; idempotent."""
        if self._ended:
            return
        self._ended = True
        self.end_reason = reason
        wall = self._last_wall if wall_time is None else wall_time
        for event in self.segmenter.finish(wall):
            await self._put(event)
        total = self._position if total_samples is None else total_samples
        self.end_samples = total
        await self._queue.put((_End(total, wall, reason), None))

    async def wait_done(self) -> None:
        """Until the consumer published everything up to the stream's end."""
        await self._consumer

    async def abort(self) -> None:
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer

    async def _put(self, event: SegmentEvent) -> None:
        fut = None
        gate = self._gate  # a few ms of FFTs per window: in a thread, the event loop serves other streams
        if (
            isinstance(event, SpeechWindow)
            and gate
            and not await asyncio.to_thread(gate.is_speech, event.samples)
        ):
            event = dataclasses.replace(event, speech=False)
        if isinstance(event, SpeechWindow) and not event.speech:
            self.stats.windows_nonspeech += 1
        elif isinstance(event, SpeechWindow):
            self.stats.windows += 1
            if self.offline:
                fut = await self.batcher.submit_waiting(event)
            else:
                fut = self.batcher.submit(event)
        elif isinstance(event, UtteranceStarted):
            self.stats.utterances += 1
        await self._queue.put((event, fut))

    async def _judge(self, window: SpeechWindow) -> bool:
        """The window gate's verdict; a few ms of FFTs, so in a thread while the loop serves others."""
        assert self._gate is not None
        return await asyncio.to_thread(self._gate.is_speech, window.samples)

    async def _consume(self) -> None:
        while True:
            item, fut = await self._queue.get()
            try:
                records = await self._records(item, fut)
            except Exception:
                log.exception("stream %s: tracker failed on %s", self.stream_id, type(item).__name__)
                records = []
            for record in records:
                await self._emit(record)
                self.stats.records += 1
            if self._on_progress is not None:
                self._on_progress()
            if isinstance(item, _End):
                return

    async def _records(
        self, item: SegmentEvent | _Silence | _End, fut: asyncio.Future[Scores | None] | None
    ) -> list[Record]:
        t = self.tracker
        if isinstance(item, SpeechWindow) and not item.speech:
            t.on_nonspeech(item)
            return [t.state("no-speech", item.end_s, item.wall_time)]
        if isinstance(item, SpeechWindow):
            scores = await fut if fut is not None else None
            if scores is None:
                self.stats.windows_dropped += 1
                t.on_window(item, None)  # counted in its utterance's "dropped"
                return []
            self.stats.windows_scored += 1
            self._scored_any = True
            rec = t.on_window(item, scores)
            state = t.state("speaking", item.end_s, item.wall_time)
            return [rec, state] if rec is not None else [state]
        if isinstance(item, UtteranceStarted):
            if self._gate is not None:  # not known to be speech yet: its first speech window says so
                return []
            return [t.state("speaking", item.start_sample / SAMPLE_RATE, item.wall_time)]
        if isinstance(item, UtteranceEnded):
            end_s = item.end_sample / SAMPLE_RATE
            if t.is_nonspeech(item.utterance_id):  # only noise/tones: no utterance at all
                t.forget(item.utterance_id)
                return [t.state("silent", end_s, item.wall_time)]
            return [t.on_utterance_end(item), t.state("silent", end_s, item.wall_time)]
        if isinstance(item, _Silence):
            if not self._scored_any or not self._publish_silence:
                return []
            return [t.state("silent", item.end_sample / SAMPLE_RATE, item.wall_time)]
        return [t.state("ended", item.total_samples / SAMPLE_RATE, item.wall_time)]
