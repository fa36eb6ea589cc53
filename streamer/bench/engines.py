"""Engines as the bench runs them: our ONNX engine with its CPU timed, and the research-way torch engine.

``TimedEngine`` wraps whatever the Batcher calls and times each ``infer`` with ``time.thread_time`` in the
Batcher's worker thread, so engine CPU can be subtracted from process CPU ("non-engine CPU"). Threads the
runtime owns (ONNX Runtime's intra-op pool, torch's OpenMP pool) are not Python threads; their CPU is read
from ``/proc/self/task`` and counted as engine CPU too (``foreign_thread_cpu``).

``TorchBackend`` is the research way: the engine's PyTorch copy (``<engine>/torch/``) run eagerly, one
window per forward call, no batching; it plugs into ``engines.Engine`` as a backend, so padding,
validation and softmax are the same code as ours.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamer.messages import FloatArray

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class TimedEngine:
    """Delegates to an engine; counts calls/rows and the calling thread's CPU and wall time per call."""

    def __init__(self, engine: Any, census: ThreadCensus | None = None) -> None:
        self.engine = engine
        self.census = census or ThreadCensus()
        self.manifest = engine.manifest
        self._lock = threading.Lock()
        self.calls = 0
        self.rows = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.max_call_ms = 0.0

    @property
    def labels(self) -> Any:
        return self.engine.labels

    @property
    def backend(self) -> str:
        return str(self.engine.backend)

    def pad_to_min(self, samples: FloatArray) -> FloatArray:
        out: FloatArray = self.engine.pad_to_min(samples)
        return out

    def infer(self, audio: FloatArray) -> Any:
        self.census.note_current()
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            return self.engine.infer(audio)
        finally:
            dc, dw = time.thread_time() - c0, time.perf_counter() - w0
            with self._lock:
                self.calls += 1
                self.rows += int(audio.shape[0])
                self.cpu_s += dc
                self.wall_s += dw
                self.max_call_ms = max(self.max_call_ms, dw * 1000.0)

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "rows": self.rows,
                "mean_batch": round(self.rows / self.calls, 2) if self.calls else 0.0,
                "thread_cpu_s": round(self.cpu_s, 3),
                "wall_s": round(self.wall_s, 3),
                "mean_call_ms": round(1000.0 * self.wall_s / self.calls, 2) if self.calls else 0.0,
                "max_call_ms": round(self.max_call_ms, 2),
            }


class ThreadCensus:
    """Native ids of every Python thread seen: a Python thread that just ended (``join`` returned) can
    linger in /proc for a moment after leaving ``threading.enumerate()``; it must not pass for a runtime
    pool thread. ``note`` is called periodically and from the engine thread."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def note(self) -> None:
        self.ids.update(t.native_id for t in threading.enumerate() if t.native_id is not None)
        self.note_current()

    def note_current(self) -> None:
        """Cheap enough for every engine call (``note`` walks every thread)."""
        self.ids.add(threading.get_native_id())


def foreign_thread_cpu(python_threads: set[int] | None = None) -> float:
    """CPU seconds of this process's threads that Python did not start (runtime thread pools), alive now."""
    ours = {t.native_id for t in threading.enumerate()} | (python_threads or set())
    total = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0.0
    for tid in tasks:
        if int(tid) in ours or int(tid) == os.getpid():
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


class TorchBackend:
    """``engines`` Backend protocol over a torch module: eager, ``inference_mode``, one row per call."""

    def __init__(self, model: Any, names: tuple[str, ...]) -> None:
        import torch

        self._torch = torch
        self.model = model.eval()
        self.names = names

    @property
    def name(self) -> str:
        return "torch-eager"

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"torch {self._torch.__version__} (CPU, eager, batch 1)",)

    def _outputs(self, out: Any) -> dict[str, np.ndarray]:
        if isinstance(out, dict):
            return {n: out[n].numpy() for n in self.names}
        if not isinstance(out, tuple | list):
            out = (out,)
        if len(out) == len(self.names):
            return {n: o.numpy() for n, o in zip(self.names, out, strict=True)}
        heads = ("logits", "vad")
        return {n: out[heads.index(n)].numpy() for n in self.names}

    def run(self, audio: FloatArray) -> dict[str, np.ndarray]:
        rows: list[dict[str, np.ndarray]] = []
        with self._torch.inference_mode():
            for row in audio:  # the research way: one window per forward call
                rows.append(self._outputs(self.model(self._torch.from_numpy(row[None, :].copy()))))
        return {n: np.concatenate([r[n] for r in rows], axis=0) for n in self.names}


def load_torch_engine(engine_dir: Path, intra_threads: int | None, inter_threads: int | None) -> Any:
    """An ``engines.Engine`` whose backend is the engine's PyTorch copy (EngineError if it has none)."""
    import torch

    from engines import Engine, read_manifest
    from training.torch_copy import load_torch_copy

    if intra_threads:
        torch.set_num_threads(intra_threads)
    if inter_threads:
        torch.set_num_interop_threads(inter_threads)
    manifest = read_manifest(engine_dir)
    model = load_torch_copy(engine_dir)
    return Engine(Path(engine_dir), manifest, TorchBackend(model, manifest.outputs.names))
