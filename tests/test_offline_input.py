"""Offline input never drops: unpaced files (``predict``, ``evaluate``, ``replay``) wait for the engine,
however many are read at once; live input keeps the bounded drop-oldest policy and counts it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from engines import load_engine
from streamer.config import EmotrackConfig, InferenceSection
from streamer.daemon import Daemon
from streamer.records import Record, UtteranceRecord, WindowRecord
from streamer.sources.pcm import PcmFormat, PcmServerSource
from streamer.sources.spec import SourceSpec, open_source
from tests.daemon_helpers import REPO, cli_cmd, cli_env, send_pcm


class Collect:
    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = {}

    async def start(self) -> None: ...

    async def emit(self, record: Record) -> None:
        self.records.setdefault(record.stream, []).append(record)

    async def stream_ended(self, stream: str) -> None: ...

    async def close(self) -> None: ...


@pytest.fixture(scope="module")
def engine(tiny_engine_dir: Path) -> Any:
    return load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1, inter_op_threads=1)


def tight_config() -> EmotrackConfig:
    """Room for 4 pending windows and one window per engine call: any flood overloads it."""
    return dataclasses.replace(
        EmotrackConfig(), inference=InferenceSection(max_batch=1, max_wait_ms=0, max_pending=4, workers=1)
    )


class Held:
    """The real engine, each call held until ``gate`` opens (the reader outruns it by far)."""

    def __init__(self, engine: Any, gate: threading.Event) -> None:
        self.manifest, self.labels, self._engine, self._gate = engine.manifest, engine.labels, engine, gate

    def pad_to_min(self, s: Any) -> Any:
        return self._engine.pad_to_min(s)

    def infer(self, audio: Any) -> Any:
        self._gate.wait(30)
        return self._engine.infer(audio)


def short_speech_files(speech_wav: Path, out: Path, n: int) -> list[Path]:
    """``n`` short files (one 1.6 s stretch of espeak speech each, different offsets)."""
    x, sr = sf.read(speech_wav, dtype="float32")
    out.mkdir()
    files = []
    for i in range(n):
        start = sr + (i % 8) * sr // 4
        clip = np.concatenate([np.zeros(sr // 4, np.float32), x[start : start + 8 * sr // 5]])
        files.append(out / f"c{i:03d}.wav")
        sf.write(files[-1], clip, sr, subtype="PCM_16")
    return files


async def test_a_flood_of_unpaced_files_waits_for_the_engine_and_drops_nothing(
    engine: Any, speech_wav: Path, tmp_path: Path
) -> None:
    gate = threading.Event()
    files = short_speech_files(speech_wav, tmp_path / "clips", 120)
    specs = [SourceSpec(kind="file", target=str(f), stream_id=f.stem, text=str(f)) for f in files]
    sink = Collect()
    d = Daemon(tight_config(), Held(engine, gate), [sink], sources=[(s, open_source(s)) for s in specs])
    task = asyncio.create_task(d.run())
    await asyncio.sleep(1.0)  # readers run ahead while the engine is held: they must wait, not drop
    assert d.batcher.stats.dropped == 0
    assert d.batcher.pending <= 4 + 1  # the bound holds (queued + the one call in the engine)
    gate.set()
    await asyncio.wait_for(task, 120)
    st = d.stats()
    assert st["windows_dropped"] == 0
    missing = [
        s.stream_id for s in specs if not any(isinstance(r, WindowRecord) for r in sink.records[s.stream_id])
    ]
    assert missing == []
    assert sum(r.dropped for rs in sink.records.values() for r in rs if isinstance(r, UtteranceRecord)) == 0


async def test_a_live_source_still_drops_the_oldest_windows_and_counts_them(
    engine: Any, speech_wav: Path
) -> None:
    """Raw PCM over TCP is live: with the engine held, its windows overflow the queue and the
    oldest are dropped, counted in the batcher, the stream's stats and its utterances' ``dropped``."""
    gate = threading.Event()
    src = PcmServerSource("c", PcmFormat("s16le", 16000, 1), port=0, chunk_ms=100)
    sink = Collect()
    d = Daemon(tight_config(), Held(engine, gate), [sink], sources=[(None, src)])
    run = asyncio.create_task(d.run())
    await src.start()
    await send_pcm(src.port, speech_wav)
    while d.batcher.stats.dropped < 3:  # about 20 windows cut against room for 4
        await asyncio.sleep(0.02)
    gate.set()
    while src.stats["active_clients"] or d.pipelines:
        await asyncio.sleep(0.05)
    d.request_stop()
    await asyncio.wait_for(run, 60)
    st = d.stats()
    (stream,) = st["streams"].values()
    utt_dropped = sum(r.dropped for rs in sink.records.values() for r in rs if isinstance(r, UtteranceRecord))
    assert st["windows_dropped"] == d.batcher.stats.dropped == stream["dropped"] == utt_dropped >= 3
    assert stream["scored"] + stream["dropped"] == stream["windows"]


def test_predict_keeps_the_end_reason_of_every_file_beyond_a_thousand(
    tiny_engine_dir: Path, tmp_path: Path
) -> None:
    """The daemon remembers only its latest 1024 ended streams: a file that breaks early in a long
    ``predict`` call must still be reported as an error, not as a file without speech."""
    bad = tmp_path / "bad.flac"
    sf.write(bad, np.random.default_rng(0).standard_normal(64000).astype(np.float32) * 0.1, 16000)
    data = bytearray(bad.read_bytes())
    data[1000:5000] = bytes(4000)  # the FLAC decoder loses sync in its first block
    bad.write_bytes(bytes(data))
    quiet = tmp_path / "quiet.wav"  # read in 12 blocks: the bad file ends long before them
    sf.write(quiet, np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    args = ["predict", "--engine", str(tiny_engine_dir), str(bad), *[str(quiet)] * 1100]
    r = subprocess.run(cli_cmd(*args), capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("emotrack: error:")]
    assert len(errors) == 1 and "bad.flac" in errors[0], r.stderr
    assert len(r.stdout.splitlines()) == 1100


def ravdess_files(corpora_dir: Path) -> list[Path]:
    files = sorted((corpora_dir / "ravdess").rglob("*.flac"))
    if len(files) < 1440:
        pytest.skip(f"RAVDESS is incomplete under {corpora_dir} ({len(files)} of 1440 files)")
    return files


@pytest.mark.timeout(600)
def test_predict_all_of_ravdess_in_one_call_answers_every_file(corpora_dir: Path) -> None:
    """All 1,440 RAVDESS files in ONE ``emotrack predict`` call with the bundled engine: every file
    has windows (before the fix about half came back ``"windows": 0, "no speech found"``).
    30-70 s on two shared cores."""
    files = ravdess_files(corpora_dir)
    r = subprocess.run(
        cli_cmd("predict", "--no-progress", *map(str, files)),
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=590,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(f) for f in files]
    empty = [row["file"] for row in rows if row["windows"] == 0]
    assert empty == [], f"{len(empty)} files without windows, e.g. {empty[:3]}"
    assert not any("windows_lost" in row for row in rows)
