"""Pipeline + Daemon wiring on real parts: file sources, webrtcvad segmenter, tiny engine, tracker.

Records are collected by an in-memory sink (the MQTT and log paths are covered in test_daemon.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.config import EmotrackConfig, SourceSection, load_config
from streamer.daemon import Daemon
from streamer.records import Record, StateRecord, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd
from streamer.sources.pcm import PcmFormat, PcmServerSource
from tests.daemon_helpers import send_pcm


class Collect:
    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.ended: list[str] = []
        self.closed = False

    async def start(self) -> None:
        return None

    async def emit(self, record: Record) -> None:
        assert record.stream not in self.ended, "record after stream_ended"
        self.records[record.stream].append(record)

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        self.ended.append(stream)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def engine(tiny_engine_dir: Path) -> Any:
    from engines import load_engine

    return load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1, inter_op_threads=1)


def config(*specs: str, **inference: Any) -> EmotrackConfig:
    cfg = load_config(environ={})
    return dataclasses.replace(
        cfg,
        sources=tuple(SourceSection(spec=s) for s in specs),
        inference=dataclasses.replace(cfg.inference, **inference),
    )


def check_stream(records: list[Record]) -> tuple[list[WindowRecord], list[UtteranceRecord]]:
    """Window/utterance seqs are 0,1,2,...; each utterance follows its windows; the last state is 'ended'."""
    numbered = [r for r in records if not isinstance(r, StateRecord)]
    assert [r.seq for r in numbered] == list(range(len(numbered)))
    windows = [r for r in numbered if isinstance(r, WindowRecord)]
    utts = [r for r in numbered if isinstance(r, UtteranceRecord)]
    for u in utts:
        mine = [w for w in windows if w.utterance == u.utterance]
        assert all(w.seq < u.seq for w in mine)
        assert u.windows == len(mine) + u.dropped
        assert u.start <= min(w.start for w in mine) + 1e-6 if mine else True
    starts = [w.start for w in windows]
    assert starts == sorted(starts)
    assert isinstance(records[-1], StateRecord) and records[-1].status == "ended"
    return windows, utts


async def test_speech_file_gives_ordered_records(engine: Any, speech_wav: Path) -> None:
    sink = Collect()
    d = Daemon(config(f"file:{speech_wav}?id=talk"), engine, [sink])
    await d.run()
    assert sink.ended == ["talk"] and sink.closed
    windows, utts = check_stream(sink.records["talk"])
    assert len(utts) == 2  # the fixture speaks the sentence twice with a second of silence between
    assert len(windows) >= 6
    assert d.batcher.stats.scored == len(windows) and d.batcher.stats.dropped == 0
    w = windows[0]
    assert w.raw.scores is not None and set(w.raw.scores) == set(engine.labels)
    assert w.smoothed.label in engine.labels and w.raw.valence is not None
    assert w.engine.name == engine.manifest.name
    # audio times come from sample counts: windows are window_s long (or shorter tails), inside the file
    info = sf.info(str(speech_wav))
    assert all(0 <= x.start < x.end <= info.duration + 1e-6 for x in windows)
    assert max(x.end - x.start for x in windows) == pytest.approx(engine.manifest.window_s, abs=1e-3)


async def test_stereo_split_gives_two_streams_batched_together(
    engine: Any, speech_wav: Path, tmp_path: Path
) -> None:
    x, sr = sf.read(str(speech_wav), dtype="float32")
    stereo = np.stack([x, np.zeros_like(x)], axis=1)  # speech left, silence right
    path = tmp_path / "call.wav"
    sf.write(str(path), stereo, sr, subtype="PCM_16")
    sink = Collect()
    # a batch waits for windows of other streams (the CPU defaults, no wait and two workers, need not batch)
    cfg = config(f"file:{path}?split=1&id=call", f"file:{speech_wav}?id=mono", max_wait_ms=100.0, workers=1)
    d = Daemon(cfg, engine, [sink])
    await d.run()
    assert sorted(sink.ended) == ["call.ch0", "call.ch1", "mono"]
    left, _ = check_stream(sink.records["call.ch0"])
    assert left
    assert not [r for r in sink.records["call.ch1"] if isinstance(r, WindowRecord)]
    assert isinstance(sink.records["call.ch1"][-1], StateRecord)
    assert d.batcher.stats.max_batch_seen > 1  # windows of different streams shared engine calls


async def test_overload_drops_are_counted_and_order_kept(engine: Any, speech_wav: Path) -> None:
    """Two live (raw PCM over TCP) streams against a held engine: the oldest windows are dropped and
    counted, and each stream's records stay in order."""
    gate = threading.Event()

    class Slow:
        """The real engine, held back until the queue has overflowed."""

        manifest = engine.manifest
        labels = engine.labels

        def pad_to_min(self, s: Any) -> Any:
            return engine.pad_to_min(s)

        def infer(self, audio: Any) -> Any:
            gate.wait(30)
            return engine.infer(audio)

    sink = Collect()
    src = PcmServerSource("live", PcmFormat(), port=0, chunk_ms=100)
    d = Daemon(config(max_pending=2, max_batch=1, max_wait_ms=0), Slow(), [sink], sources=[(None, src)])
    task = asyncio.create_task(d.run())
    await src.start()
    await asyncio.gather(send_pcm(src.port, speech_wav), send_pcm(src.port, speech_wav))
    while d.batcher.stats.dropped < 3:
        await asyncio.sleep(0.01)
    gate.set()
    while src.stats["active_clients"] or d.pipelines:
        await asyncio.sleep(0.05)
    d.request_stop()
    await task
    total_dropped = 0
    assert sorted(sink.records) == ["live", "live-2"]
    for sid in sink.records:
        _windows, utts = check_stream(sink.records[sid])
        total_dropped += sum(u.dropped for u in utts)
    assert total_dropped == d.batcher.stats.dropped >= 3
    assert d.stats()["windows_dropped"] == total_dropped


async def test_stop_drains_windows_in_flight(engine: Any, speech_wav: Path) -> None:
    sink = Collect()
    cfg = config(f"file:{speech_wav}?id=rt&realtime=1")
    d = Daemon(cfg, engine, [sink])
    task = asyncio.create_task(d.run())
    while not any(isinstance(r, WindowRecord) for r in sink.records["rt"]):
        await asyncio.sleep(0.05)
    d.request_stop()
    await task
    windows, utts = check_stream(sink.records["rt"])
    assert d.batcher.stats.scored == len(windows)  # everything cut before the stop was published
    assert sink.records["rt"][-1].status == "ended"  # type: ignore[union-attr]
    assert utts  # the open utterance was closed by the drain
    assert windows[-1].end < 7.0  # it really stopped early (the file is ~8 s)
