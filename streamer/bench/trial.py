"""One bench trial in its own process: the daemon's code for N paced file streams, measured from inside.

``python -m streamer.bench.trial`` reads a ``TrialSpec`` as JSON on stdin and prints one JSON object: the
daemon's counters, each stream's start wall time (audio time 0), CPU (process, engine thread, runtime
pools), wall time and peak RSS. A fresh process per trial keeps peak RSS and thread pools per trial.
Latency is measured by the subscriber process against the start times printed here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.config import InferenceSection
from streamer.messages import SAMPLE_RATE, AudioChunk, SourceEvent, SpeechWindow

DAEMON_DEFAULTS = InferenceSection()  # a trial runs what the daemon runs unless told otherwise


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs; plain types so it travels as JSON."""

    files: tuple[str, ...]
    engine: str | None
    backend: str = "onnxruntime"
    intra_threads: int | None = None
    inter_threads: int | None = None
    max_batch: int = DAEMON_DEFAULTS.max_batch
    max_wait_ms: float = DAEMON_DEFAULTS.max_wait_ms
    max_pending: int = DAEMON_DEFAULTS.max_pending
    workers: int = DAEMON_DEFAULTS.workers
    chunk_ms: float = DAEMON_DEFAULTS.chunk_ms
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    prefix: str = "emotrack-bench"
    log_dir: str = "emotrack-bench-logs"
    warmup: bool = True
    stagger: bool = False  # spread stream starts over one chunk period instead of all at once

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrialSpec:
        d = json.loads(text)
        d["files"] = tuple(d["files"])
        return cls(**d)


class StartTimes:
    """Wraps a source; notes each stream's wall time at audio time 0 and the end of its latest chunk."""

    def __init__(
        self, src: Any, starts: dict[str, float], latest: dict[str, int], delay: float = 0.0
    ) -> None:
        self._src = src
        self._starts = starts
        self._latest = latest
        self._delay = delay  # start this stream later (phase of its chunks relative to the others)

    @property
    def stream_ids(self) -> list[str]:
        return list(self._src.stream_ids)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._src.stats)

    async def _events(self) -> AsyncIterator[SourceEvent]:
        if self._delay > 0:
            await asyncio.sleep(self._delay)
        async for ev in self._src:
            if isinstance(ev, AudioChunk):
                if ev.stream_id not in self._starts:
                    self._starts[ev.stream_id] = ev.wall_time - ev.start_sample / SAMPLE_RATE
                self._latest[ev.stream_id] = ev.end_sample
            yield ev

    def __aiter__(self) -> AsyncIterator[SourceEvent]:
        return self._events()

    async def aclose(self) -> None:
        await self._src.aclose()


def watch_submissions(batcher: Any, latest: dict[str, int]) -> dict[str, dict[int, float]]:
    """Per stream and window index: the audio time (s) of the chunk whose arrival completed the window.

    A sliding window is complete when audio up to its end arrived; an utterance's last window only when
    the VAD closed the utterance (``vad.end_ms`` of silence later). Receipt minus this is the latency the
    pipeline adds, whatever the VAD had to wait for.
    """
    ready: dict[str, dict[int, float]] = {}
    submit = batcher.submit

    def watched(window: SpeechWindow, **kw: Any) -> Any:
        sid = window.stream_id
        ready.setdefault(sid, {})[window.index] = latest.get(sid, window.end_sample) / SAMPLE_RATE
        return submit(window, **kw)

    batcher.submit = watched  # an instance attribute: the pipelines call batcher.submit(window)
    return ready


def load(spec: TrialSpec) -> Any:
    """The engine the trial runs: ours (ONNX Runtime on CPU) or the research way (torch, batch 1)."""
    if spec.backend == "torch":
        from engines import resolve_engine_path
        from streamer.bench.engines import load_torch_engine

        path = resolve_engine_path(spec.engine or None)
        return load_torch_engine(path, spec.intra_threads, spec.inter_threads)
    from engines import load_engine
    from streamer.config import engine_threads

    return load_engine(
        spec.engine,
        backend="onnxruntime-cpu",
        intra_op_threads=engine_threads(spec.intra_threads, spec.workers),
        inter_op_threads=spec.inter_threads,
    )


def peak_rss_kb() -> int:
    """This process's peak resident set (kB): VmHWM of its own address space.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` also carries the parent's peak across fork+exec (Linux keeps
    the larger of the two), so a bench parent that loaded torch would inflate it; VmHWM starts fresh
    at exec. ru_maxrss is the fallback where /proc is absent.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def _census_loop(census: Any, every_s: float = 0.25) -> None:
    while True:
        census.note()
        await asyncio.sleep(every_s)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run_trial(spec: TrialSpec) -> dict[str, Any]:
    from streamer.bench.engines import ThreadCensus, TimedEngine, foreign_thread_cpu
    from streamer.config import DaemonSection, EmotrackConfig
    from streamer.daemon import Daemon
    from streamer.sinks.base import Sink
    from streamer.sinks.logfile import ConversationLog, LogConfig
    from streamer.sinks.mqtt import MqttConfig, MqttSink
    from streamer.sources.file import FileSource

    census = ThreadCensus()
    engine = TimedEngine(await asyncio.to_thread(load, spec), census)
    if spec.warmup:  # first calls allocate arenas and pick kernels: not what a long-running daemon pays
        n = engine.manifest.window_samples
        for b in sorted({1, min(spec.max_batch, len(spec.files))}):
            await asyncio.to_thread(engine.engine.infer, np.zeros((b, n), dtype=np.float32))
    cfg = EmotrackConfig(
        inference=InferenceSection(
            max_batch=spec.max_batch,
            max_wait_ms=spec.max_wait_ms,
            max_pending=spec.max_pending,
            workers=spec.workers,
            chunk_ms=spec.chunk_ms,
        ),
        daemon=DaemonSection(watchdog=False, drain_timeout_s=120.0),
    )
    # the daemon's defaults (outbox, QoS 1, retained state): what users run, drops and all
    mqtt = MqttSink(MqttConfig(url=spec.mqtt_url, prefix=spec.prefix, client_id=f"{spec.prefix}-daemon"))
    logs = ConversationLog(LogConfig(directory=Path(spec.log_dir), rotate_bytes=None, rotate_seconds=None))
    sinks: list[Sink] = [mqtt, logs]
    starts: dict[str, float] = {}
    latest: dict[str, int] = {}
    period = spec.chunk_ms / 1000.0
    sources = [
        (
            None,
            StartTimes(
                FileSource(f, f"s{i:03d}", realtime=True, chunk_ms=spec.chunk_ms),
                starts,
                latest,
                delay=period * i / len(spec.files) if spec.stagger else 0.0,
            ),
        )
        for i, f in enumerate(spec.files)
    ]
    daemon = Daemon(cfg, engine, sinks, sources=sources, publish_stats=mqtt.publish_stats)
    ready = watch_submissions(daemon.batcher, latest)
    census.note()
    foreign0, cpu0, wall0 = foreign_thread_cpu(census.ids), _cpu(), time.perf_counter()
    loop0 = time.thread_time()  # the event loop's thread: saturated at 1.0 s per s, whatever the cores
    watcher = asyncio.create_task(_census_loop(census))
    try:
        await daemon.run()
    finally:
        watcher.cancel()
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    loop_cpu = time.thread_time() - loop0
    census.note()
    pool_cpu = max(0.0, foreign_thread_cpu(census.ids) - foreign0)
    bstats = daemon.batcher.stats
    streams = daemon.stats()["streams"]
    return {
        "engine": {
            "name": engine.manifest.name,
            "version": engine.manifest.version,
            "backend": engine.backend,
            "providers": list(getattr(engine.engine, "providers", ())),
        },
        "starts": starts,
        "ready": ready,
        "wall_s": wall,
        "cpu_s": cpu,
        "engine_thread_cpu_s": engine.cpu_s,
        "engine_pool_cpu_s": pool_cpu,
        "loop_thread_cpu_s": loop_cpu,
        "peak_rss_kb": peak_rss_kb(),
        "batcher": dataclasses.asdict(bstats),
        "engine_calls": engine.counters(),
        "windows_cut": sum(s["windows"] for s in streams.values()),
        "audio_s": sum(s["audio_s"] for s in streams.values()),
        "mqtt": mqtt.counters(),
        "logs": logs.counters(),
        "sink_errors": daemon.sink_errors,
    }


def main() -> int:
    spec = TrialSpec.from_json(sys.stdin.read())
    try:
        result = asyncio.run(run_trial(spec))
    except Exception as exc:  # reported to the parent in one line, which names the cause
        print(json.dumps({"error": " ".join(f"{type(exc).__name__}: {exc}".split())}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
