"""Batcher: cross-stream batches on the real tiny engine, drop-oldest under overload, clean drain."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.inference import Batcher, BatcherClosed
from streamer.messages import SAMPLE_RATE, FloatArray, Scores, SpeechWindow


def window(stream: str, index: int, seconds: float = 2.0, seed: int = 0) -> SpeechWindow:
    rng = np.random.default_rng(seed + index)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    x = (0.3 * np.sin(2 * np.pi * (150 + 20 * index) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)
    return SpeechWindow(stream, 0, index, index * 8000, index * 8000 + n, x, 0.0)


class Recording:
    """Wraps the real engine; records batch shapes; optionally blocks until released (slow engine)."""

    def __init__(self, engine: Any, gate: threading.Event | None = None) -> None:
        self.engine = engine
        self.shapes: list[tuple[int, int]] = []
        self.gate = gate
        self.threads: set[str] = set()

    @property
    def labels(self) -> Any:
        return self.engine.labels

    def pad_to_min(self, samples: FloatArray) -> FloatArray:
        out: FloatArray = self.engine.pad_to_min(samples)
        return out

    def infer(self, audio: FloatArray) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(30)
        self.shapes.append(audio.shape)
        return self.engine.infer(audio)


@pytest.fixture(scope="module")
def engine(tiny_engine_dir: Path) -> Any:
    from engines import load_engine

    return load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1, inter_op_threads=1)


async def test_batches_across_streams_and_matches_single_calls(engine: Any) -> None:
    rec = Recording(engine)
    b = Batcher(rec, max_batch=8, max_wait_ms=200, max_pending=64)
    wins = [window(s, i) for i in range(3) for s in ("a", "b")]
    futs = [b.submit(w) for w in wins]
    results = await asyncio.gather(*futs)
    await b.drain()
    assert rec.shapes == [(6, 32000)]  # one call for all six windows of both streams
    assert b.stats.scored == 6 and b.stats.dropped == 0 and b.stats.batches == 1
    assert all(t.startswith("emotrack-infer") for t in rec.threads)  # never on the event loop
    for w, r in zip(wins, results, strict=True):
        assert isinstance(r, Scores)
        assert r.probabilities is not None and set(r.probabilities) == set(engine.labels)
        assert abs(sum(r.probabilities.values()) - 1.0) < 1e-4
        assert r.vad is not None and all(-1.0 <= v <= 1.0 for v in r.vad)
        single = engine.infer(w.samples[None, :])
        np.testing.assert_allclose(
            [r.probabilities[lab] for lab in engine.labels], single.probabilities[0], atol=1e-4
        )


async def test_mixed_lengths_go_in_separate_calls_and_short_ones_are_padded(engine: Any) -> None:
    rec = Recording(engine)
    b = Batcher(rec, max_batch=16, max_wait_ms=100, max_pending=64)
    short = window("a", 0, seconds=0.2)  # below the manifest minimum: padded by the engine's policy
    futs = [
        b.submit(window("a", 1)),
        b.submit(short),
        b.submit(window("b", 2)),
        b.submit(window("c", 3, 1.0)),
    ]
    res = await asyncio.gather(*futs)
    await b.drain()
    assert all(isinstance(r, Scores) for r in res)
    min_n = len(engine.pad_to_min(short.samples))
    assert min_n >= len(short.samples)
    assert sorted(rec.shapes) == sorted([(2, 32000), (1, min_n), (1, 16000)])
    assert b.stats.batches == 1 and b.stats.calls == 3


async def test_overload_drops_oldest_and_counts(engine: Any) -> None:
    gate = threading.Event()
    rec = Recording(engine, gate)
    b = Batcher(rec, max_batch=2, max_wait_ms=0, max_pending=4)
    first = [b.submit(window("a", i)) for i in range(2)]
    await asyncio.sleep(0.05)  # the worker takes those two and blocks inside the engine
    assert b.pending == 2
    later = [b.submit(window("b", i)) for i in range(7)]
    assert b.stats.dropped == 3  # 7 into a queue of 4: the 3 oldest went
    assert [f.done() for f in later] == [True, True, True, False, False, False, False]
    assert all(f.result() is None for f in later[:3])
    gate.set()
    res = await asyncio.gather(*first, *later[3:])
    await b.drain()
    assert all(isinstance(r, Scores) for r in res)
    assert b.stats.scored == 6 and b.stats.dropped == 3


async def test_drain_scores_everything_then_refuses(engine: Any) -> None:
    b = Batcher(engine, max_batch=4, max_wait_ms=1000, max_pending=64)
    futs = [b.submit(window(f"s{i % 3}", i)) for i in range(10)]
    await b.drain()  # must not wait out max_wait_ms with a partial batch
    assert all(f.done() and isinstance(f.result(), Scores) for f in futs)
    assert b.stats.scored == 10 and b.stats.batches == 3
    with pytest.raises(BatcherClosed):
        b.submit(window("a", 0))


async def test_engine_failure_resolves_none_and_continues(engine: Any) -> None:
    class Broken(Recording):
        def infer(self, audio: FloatArray) -> Any:
            if audio.shape[1] == 16000:
                raise RuntimeError("boom")
            return super().infer(audio)

    b = Batcher(Broken(engine), max_batch=8, max_wait_ms=50, max_pending=16)
    bad, good = b.submit(window("a", 0, 1.0)), b.submit(window("a", 1))
    assert await bad is None
    assert isinstance(await good, Scores)
    await b.drain()
    assert b.stats.failed == 1 and b.stats.scored == 1


async def test_progress_callback(engine: Any) -> None:
    beats: list[int] = []
    b = Batcher(engine, max_batch=4, max_wait_ms=0, on_progress=lambda: beats.append(1))
    await b.submit(window("a", 0))
    await b.drain()
    assert beats


class Overlap(Recording):
    """Records how many engine calls run at the same moment (each call holds for a little while)."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def infer(self, audio: FloatArray) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            threading.Event().wait(0.05)
            return super().infer(audio)
        finally:
            with self._lock:
                self.now -= 1


async def test_several_workers_run_engine_calls_at_once_and_keep_results_per_window(engine: Any) -> None:
    rec = Overlap(engine)
    b = Batcher(rec, max_batch=2, max_wait_ms=0, max_pending=64, workers=2)
    wins = [window(s, i) for i in range(4) for s in ("a", "b")]
    got = await asyncio.gather(*(b.submit(w) for w in wins))
    await b.drain()
    assert rec.most == 2 and len(rec.threads) == 2
    assert b.stats.scored == len(wins) and b.pending == 0
    for w, s in zip(wins, got, strict=True):  # each future holds its own window's scores
        alone = engine.infer(w.samples[None, :])
        assert s is not None and s.probabilities is not None
        assert list(s.probabilities.values()) == pytest.approx(list(alone.probabilities[0]), abs=1e-5)


def test_workers_must_be_positive(engine: Any) -> None:
    with pytest.raises(ValueError, match="workers"):
        Batcher(engine, workers=0)


async def test_offline_windows_wait_for_room_and_are_never_dropped(engine: Any) -> None:
    """``submit_waiting`` holds the reader while the queue is full; a live flood then drops only
    live windows, however old the offline ones queued beside them are."""
    gate = threading.Event()
    b = Batcher(Recording(engine, gate), max_batch=1, max_wait_ms=0, max_pending=2)
    held = b.submit(window("x", 0))
    await asyncio.sleep(0.05)  # the worker is inside the engine with it
    offline = [await b.submit_waiting(window("f", i)) for i in range(2)]
    third = asyncio.create_task(b.submit_waiting(window("f", 2)))
    await asyncio.sleep(0.05)
    assert not third.done()  # no room: the offline reader waits instead of dropping
    live = [b.submit(window("m", i)) for i in range(5)]
    assert b.stats.dropped == 3 and all(f.result() is None for f in live[:3])
    assert not any(f.done() for f in offline)
    gate.set()
    res = await asyncio.gather(held, *offline, await third, *live[3:])
    await b.drain()
    assert all(isinstance(r, Scores) for r in res)
    assert b.stats.scored == 6 and b.stats.dropped == 3
