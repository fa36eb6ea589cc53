"""``emotrack bench --engine-cost``: what one window costs in the engine alone, ours and the research way.

The whole-pipeline figures say how many streams fit; these say why. Each figure is the median over
``repeats`` timed calls (after warm-up calls) of CPU time (``time.thread_time`` in the calling thread plus
the runtime's own pool threads) and wall time, divided by the windows in the call. Ours is the engine
through ONNX Runtime at batch 1 and at ``batch``; the research way is the engine's PyTorch copy run
eagerly, one window per call, at each thread count given.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamer.bench.engines import foreign_thread_cpu


def _time_calls(engine: Any, audio: np.ndarray, repeats: int) -> dict[str, float]:
    rows = int(audio.shape[0])
    for _ in range(3):
        engine.infer(audio)
    cpu, wall = [], []
    for _ in range(repeats):
        f0, c0, w0 = foreign_thread_cpu(), time.thread_time(), time.perf_counter()
        engine.infer(audio)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0 + foreign_thread_cpu() - f0)
    return {
        "cpu_ms_per_window": round(1000.0 * statistics.median(cpu) / rows, 3),
        "wall_ms_per_window": round(1000.0 * statistics.median(wall) / rows, 3),
    }


def engine_cost(
    engine_dir: Path | None,
    *,
    threads: Sequence[int] = (1, 2),
    batch: int = 32,
    repeats: int = 20,
) -> dict[str, Any]:
    """Per-window cost of ours (ONNX Runtime, batch 1 and ``batch``) and of the research way (PyTorch
    eager, batch 1) where the engine has a PyTorch copy; one entry per thread count."""
    from engines import load_engine, read_manifest, resolve_engine_path

    path = resolve_engine_path(engine_dir)
    manifest = read_manifest(path)
    n = round(manifest.window_s * manifest.sample_rate)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((batch, n))).astype(np.float32)
    out: dict[str, Any] = {
        "engine": f"{manifest.name} {manifest.version}",
        "window_s": n / manifest.sample_rate,
        "batch": batch,
        "repeats": repeats,
        "ours": {},
        "research": {},
    }
    for t in threads:
        eng = load_engine(path, backend="onnxruntime-cpu", intra_op_threads=t, inter_op_threads=1)
        out["ours"][f"threads_{t}"] = {
            "batch_1": _time_calls(eng, audio[:1], repeats),
            f"batch_{batch}": _time_calls(eng, audio, max(3, repeats // 4)),
        }
    if importlib.util.find_spec("torch") is None:
        out["research"] = "not measured: PyTorch is not installed (pip install 'emotrack[train]')"
    elif (path / "torch" / "config.json").is_file():
        from streamer.bench.engines import load_torch_engine

        for t in threads:
            teng = load_torch_engine(path, t, None)  # sets torch's thread count
            out["research"][f"threads_{t}"] = {"batch_1": _time_calls(teng, audio[:1], repeats)}
    else:
        out["research"] = None  # no PyTorch copy in this engine directory
    return out
