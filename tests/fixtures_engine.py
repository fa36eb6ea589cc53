"""Engine fixtures: one tiny engine exported per test session, plus throwaway copies to corrupt."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from streamer.messages import Scores
from tests.tiny_engine import build_tiny_engine


@pytest.fixture(scope="session")
def tiny_engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny engine (labels neutral/happy/sad/angry, logits + vad, 2 s window); treat as read-only."""
    pytest.importorskip("torch", reason="building the tiny engine needs the .[train] extra (torch)")
    return build_tiny_engine(tmp_path_factory.mktemp("tiny_engine"))


@pytest.fixture()
def tiny_engine_copy(tiny_engine_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny engine that a test may modify or corrupt."""
    dst = tmp_path / "engine"
    shutil.copytree(tiny_engine_dir, dst)
    return dst


async def scores_through_segmenter_and_batcher(engine_dir: Path, wav: Path) -> list[Scores]:
    """``wav`` in 100 ms chunks through the daemon's segmenter and batcher with the engine at
    ``engine_dir``: every window scored, four-class probabilities summing to 1, V/A/D present. Returns the
    scores for an engine's own further checks."""
    from engines import load_engine
    from streamer.inference import Batcher
    from streamer.messages import AudioChunk, SpeechWindow
    from streamer.segmenter import Segmenter, WindowConfig
    from streamer.vad import VadConfig

    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    x, _ = sf.read(wav, dtype="float32")
    seg = Segmenter("s", VadConfig(), WindowConfig.from_manifest(engine.manifest))
    events = []
    for start in range(0, len(x), 1600):  # 100 ms chunks, like a live source
        events += seg.feed(AudioChunk("s", x[start : start + 1600], start, 0.0))
    events += seg.finish(0.0)
    windows = [e for e in events if isinstance(e, SpeechWindow)]
    assert windows, "the segmenter found no speech windows in the espeak-ng speech"
    batcher = Batcher(engine, max_batch=8, max_wait_ms=5.0, max_pending=64)
    scores = await asyncio.gather(*(batcher.submit(w) for w in windows))
    await batcher.drain()
    out: list[Scores] = []
    for s in scores:
        assert s is not None and s.probabilities is not None and s.vad is not None
        assert set(s.probabilities) == {"neutral", "happy", "sad", "angry"}
        assert abs(sum(s.probabilities.values()) - 1.0) < 1e-4
        out.append(s)
    return out


def shipped_figures_reproduced(engine_dir: Path, ravdess: Path, threads: int) -> tuple[Any, Any]:
    """A fresh evaluation of the engine on RAVDESS actors 19-24 gives the four-class UA/WA, n and V/A/D CCC
    its engine.json states. Returns (figures, reports) for an engine's own further checks."""
    from engines import read_manifest
    from training.evaluate import evaluate_default_engine

    figures, reports = evaluate_default_engine(engine_dir, ravdess, threads=threads)
    shipped = read_manifest(engine_dir).provenance.metrics
    assert figures["ua_4"] == pytest.approx(shipped["ua_4"], abs=0.01)
    assert figures["wa_4"] == pytest.approx(shipped["wa_4"], abs=0.01)
    assert reports["4"].n == shipped["n_4"]
    for dim, value in (reports["4"].ccc or {}).items():
        assert value == pytest.approx(shipped["ccc"][dim], abs=0.01)
    return figures, reports
