"""The daemon: engine + sinks + every source running concurrently, with a clean SIGTERM drain.

Start: load the engine (in a thread), start the sinks (embedded broker or MQTT publisher, conversation
logs, stdout), open the sources, then tell systemd READY=1. Stop (SIGTERM/SIGINT, or every source ended):
stop reading sources, close each stream's open utterance, score every window already cut, publish and
log the records, publish ``offline``, close the files. A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from streamer.config import EmotrackConfig
from streamer.inference import Batcher
from streamer.messages import SAMPLE_RATE, AudioChunk, StreamEnded
from streamer.pipeline import StreamPipeline, StreamStats
from streamer.records import EngineRef, Record, StateRecord
from streamer.resolved import source_specs, window_config
from streamer.sdnotify import Heartbeat, SdNotifier, watchdog_loop
from streamer.segmenter import Segmenter
from streamer.seqstore import SeqStore, SeqStoreError
from streamer.sinks.base import Sink, StreamEnd
from streamer.sources.base import AudioSource
from streamer.sources.spec import SourceSpec, open_source
from streamer.tracker import StreamTracker

log = logging.getLogger(__name__)

_KEEP_ENDED = 1024  # ended streams whose reason and counters are kept (stats, predict)


def _remember(d: dict[str, Any], key: str, value: Any) -> None:
    """Insert as newest, forgetting the oldest beyond ``_KEEP_ENDED``."""
    d.pop(key, None)
    d[key] = value
    while len(d) > _KEEP_ENDED:
        d.pop(next(iter(d)))


class Daemon:
    """Runs the configured sources through one engine into the sinks until stopped or all ended."""

    def __init__(
        self,
        cfg: EmotrackConfig,
        engine: Any,
        sinks: Sequence[Sink],
        *,
        sources: Sequence[tuple[SourceSpec | None, AudioSource]] = (),
        notifier: SdNotifier | None = None,
        publish_stats: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.sinks = list(sinks)
        self.notifier = notifier or SdNotifier({})
        self._publish_stats = publish_stats
        self._given_sources = list(sources)
        self.heartbeat = Heartbeat()
        manifest = engine.manifest
        self.windows = window_config(cfg, manifest)
        self.smoothing = dataclasses.replace(cfg.smoothing, hop_s=self.windows.hop_s)
        self.engine_ref = EngineRef(manifest.name, manifest.version)
        self.labels = list(engine.labels) if manifest.outputs.logits else None
        self.has_vad = bool(manifest.outputs.vad)
        self.pipelines: dict[str, StreamPipeline] = {}
        self._next_seq: dict[str, int] = {}
        self.seqstore: SeqStore | None = None  # persisted seqs (set by service.serve when a state dir exists)
        self._finishing: set[asyncio.Task[None]] = set()
        self.end_reasons: dict[str, str] = {}  # stream id -> why it ended
        self.ended_stats: dict[str, StreamStats] = {}
        self.streams_ended = 0
        self._stop = asyncio.Event()
        self._stop_reason = "shutdown"  # the end reason of streams still open at the drain
        self._ephemeral: set[str] = set()  # socket clients' streams (retained state goes with them)
        self._live: set[str] = set()  # mic sources still running (they must keep producing)
        self.started = time.time()
        self.sink_errors = 0
        self.records = 0
        self._sources: Sequence[tuple[SourceSpec | None, AudioSource]] = ()
        self.batcher = Batcher(
            engine,
            max_batch=cfg.inference.max_batch,
            max_wait_ms=cfg.inference.max_wait_ms,
            max_pending=cfg.inference.max_pending,
            on_progress=self.heartbeat.beat,
            workers=cfg.inference.workers,
        )

    # -- control ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping: draining windows in flight")
            self.notifier.stopping("draining")
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self._stop.is_set():
            log.warning("second signal: exiting without finishing the drain")
            raise SystemExit(1)
        self._stop_reason = sig.name.lower()  # "sigterm" / "sigint" in each open stream's stream_end
        self.request_stop()

    def busy(self) -> bool:
        """Work is expected to advance: windows pending, events queued, or a microphone running."""
        return (
            self.batcher.pending > 0
            or any(p.outstanding for p in self.pipelines.values())
            or bool(self._live)
        )

    # -- run -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Start sinks and sources, run until stopped or every source ended, then drain."""
        sources = self._given_sources or [
            (s, open_source(s, chunk_ms=self.cfg.inference.chunk_ms)) for s in source_specs(self.cfg)
        ]
        self._sources = sources
        try:
            for sink in self.sinks:
                await sink.start()
            for _, src in sources:
                start = getattr(src, "start", None)
                if start is not None:
                    await start()
        except BaseException:  # e.g. an unusable log directory or a taken TCP port: undo, then report
            await self._close_all(sources)
            raise
        self.batcher.start()
        tasks = [
            asyncio.create_task(self._read(spec, src), name=f"source-{i}")
            for i, (spec, src) in enumerate(sources)
        ]
        side: list[asyncio.Task[None]] = [asyncio.create_task(self._stats_loop(), name="stats")]
        interval = self.notifier.watchdog_interval
        if self.cfg.daemon.watchdog and interval:
            side.append(
                asyncio.create_task(watchdog_loop(self.notifier, self.heartbeat, self.busy, interval))
            )
        self.notifier.ready(
            f"engine {self.engine_ref.name} {self.engine_ref.version}; {len(sources)} source(s)"
        )
        all_read: asyncio.Future[list[Any]] = asyncio.gather(*tasks, return_exceptions=True)
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        failures: list[Exception] = []
        try:
            await asyncio.wait([all_read, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            self._stop.set()
            failures = [r for r in await all_read if isinstance(r, Exception)]
            await asyncio.wait_for(self._drain(), self.cfg.daemon.drain_timeout_s)
        except TimeoutError:
            log.error(
                "drain did not finish within %.0f s; records in flight are lost",
                self.cfg.daemon.drain_timeout_s,
            )
            for p in self.pipelines.values():
                await p.abort()
        finally:
            stop_wait.cancel()
            for t in side:
                t.cancel()
            for t in side:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await self._emit_stats()
            for sink in self.sinks:
                try:
                    await sink.close()
                except Exception as exc:
                    log.error("closing %s failed: %s", type(sink).__name__, exc)
            self.notifier.status("stopped")
        if failures:  # after the drain: the other streams' records are out; the CLI prints this one
            raise failures[0]

    async def _close_all(self, sources: Sequence[tuple[SourceSpec | None, AudioSource]]) -> None:
        for _, src in sources:
            with contextlib.suppress(Exception):
                await src.aclose()
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                await sink.close()
        await self.batcher.close()

    async def _drain(self) -> None:
        for p in list(self.pipelines.values()):
            if not p.ended:
                await self._end_pipeline(p, None, self._stop_reason)
        await self.batcher.drain()
        while self._finishing:
            await asyncio.gather(*list(self._finishing))

    async def _read(self, spec: SourceSpec | None, src: AudioSource) -> None:
        """Feed one source's events to its streams until it ends or the daemon stops."""
        live = spec is not None and spec.kind == "mic"
        ephemeral = bool(getattr(src, "ephemeral", False))
        offline = bool(getattr(src, "offline", False))  # it waits for the engine: nothing is dropped
        key = spec.stream_id if spec is not None else str(id(src))
        if live:
            self._live.add(key)
        it = aiter(src)
        stop = asyncio.create_task(self._stop.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(anext(it))
                await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():  # checked first: a source that always has data never waits
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                        await nxt
                    break
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    break
                except Exception:
                    self.request_stop()  # a broken source is fatal: drain the others, then report it
                    raise
                self.heartbeat.beat()
                if isinstance(ev, AudioChunk):
                    if ephemeral:
                        self._ephemeral.add(ev.stream_id)
                    await self._pipeline(ev.stream_id, offline).feed(ev)
                elif isinstance(ev, StreamEnded):
                    if ev.reason not in ("eof", "disconnected"):
                        log.warning("stream %s ended: %s", ev.stream_id, ev.reason)
                    await self._end_stream(ev, offline)
        finally:
            stop.cancel()
            self._live.discard(key)
            with contextlib.suppress(Exception):
                await src.aclose()

    def _pipeline(self, stream_id: str, offline: bool = False) -> StreamPipeline:
        p = self.pipelines.get(stream_id)
        if p is None or p.ended:
            tracker = StreamTracker(
                stream_id,
                self.engine_ref,
                self.labels,
                self.has_vad,
                self.smoothing,
                max(
                    self._next_seq.get(stream_id, 0),
                    self.seqstore.start_seq(stream_id) if self.seqstore is not None else 0,
                ),
                centring=self.cfg.centring,
            )
            p = StreamPipeline(
                stream_id,
                Segmenter(stream_id, self.cfg.vad, self.windows),
                tracker,
                self.batcher,
                self._emit,
                max_in_flight=self.cfg.inference.max_in_flight,
                publish_silence=self.smoothing.silence == "decay",
                on_progress=self.heartbeat.beat,
                offline=offline,
            )
            self.pipelines[stream_id] = p
        return p

    async def _end_stream(self, ev: StreamEnded, offline: bool) -> None:
        await self._end_pipeline(self._pipeline(ev.stream_id, offline), ev.total_samples, ev.reason)

    async def _end_pipeline(self, p: StreamPipeline, total_samples: int | None, reason: str) -> None:
        await p.end(total_samples, None, reason)
        task = asyncio.create_task(self._finish_stream(p))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish_stream(self, p: StreamPipeline) -> None:
        await p.wait_done()
        self._next_seq[p.stream_id] = p.tracker.next_seq  # a stream id that comes back continues its seq
        _remember(self.end_reasons, p.stream_id, p.end_reason or "eof")
        _remember(self.ended_stats, p.stream_id, p.stats)
        if self.pipelines.get(p.stream_id) is p:  # servers see many short streams: keep only live ones
            del self.pipelines[p.stream_id]
        self.streams_ended += 1
        ephemeral = p.stream_id in self._ephemeral
        self._ephemeral.discard(p.stream_id)
        audio_s = p.end_samples / SAMPLE_RATE
        await self._stream_ended(p.stream_id, StreamEnd(p.end_reason or "eof", audio_s, ephemeral))

    async def _stream_ended(self, stream_id: str, end: StreamEnd) -> None:
        for sink in self.sinks:
            try:
                await sink.stream_ended(stream_id, end)
            except Exception as exc:
                self.sink_errors += 1
                log.error("%s: stream_ended(%s) failed: %s", type(sink).__name__, stream_id, exc)

    async def _emit(self, record: Record) -> None:
        self.records += 1
        if self.seqstore is not None and not isinstance(record, StateRecord):
            try:  # before any sink sees the seq: a crash after this never reuses it
                self.seqstore.use(record.stream, record.seq)
            except SeqStoreError as exc:
                self.sink_errors += 1
                log.error("%s", exc)
        for sink in self.sinks:
            try:
                await sink.emit(record)
            except Exception as exc:  # one broken sink must not stop the others or the stream
                self.sink_errors += 1
                log.error("%s: emit failed: %s", type(sink).__name__, exc)

    # -- stats -----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        b = self.batcher.stats
        live = {sid: p.stats for sid, p in self.pipelines.items()}
        streams = {
            sid: {
                "windows": st.windows,
                "scored": st.windows_scored,
                "dropped": st.windows_dropped,
                "nonspeech": st.windows_nonspeech,
                "utterances": st.utterances,
                "audio_s": round(st.samples / SAMPLE_RATE, 3),
                "ended": sid not in live,
            }
            for sid, st in {**self.ended_stats, **live}.items()
        }
        out: dict[str, Any] = {
            "uptime_s": round(time.time() - self.started, 3),
            "wall_time": round(time.time(), 3),
            "streams_active": sum(1 for p in self.pipelines.values() if not p.ended),
            "streams_ended": self.streams_ended,
            "windows_scored": b.scored,
            "windows_dropped": b.dropped,
            "windows_failed": b.failed,
            "batches": b.batches,
            "engine_calls": b.calls,
            "max_batch_seen": b.max_batch_seen,
            "workers": self.batcher.workers,
            "pending": self.batcher.pending,
            "records": self.records,
            "sink_errors": self.sink_errors,
            "streams": streams,
            "sources": {
                (spec.stream_id if spec is not None else str(i)): dict(src.stats)
                for i, (spec, src) in enumerate(self._sources)
            },
        }
        for sink in self.sinks:
            counters = getattr(sink, "counters", None)
            if callable(counters):
                out[type(sink).__name__] = counters()
        return out

    async def _emit_stats(self) -> None:
        if self._publish_stats is None:
            return
        try:
            r = self._publish_stats(self.stats())
            if asyncio.iscoroutine(r):
                await r
        except Exception as exc:
            log.error("publishing stats failed: %s", exc)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.daemon.stats_interval_s)
            await self._emit_stats()
            self.notifier.status(
                f"{len(self.pipelines)} stream(s), {self.batcher.stats.scored} windows scored, "
                f"{self.batcher.stats.dropped} dropped"
            )
