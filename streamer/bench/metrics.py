"""Bench figures from what the subscriber received and what the trial process measured.

Latency of a window = its receipt by the subscriber − the wall time its last sample was captured, i.e.
the stream's start wall time + the window's end in audio time. Onset → first emotion = receipt of the
first window overlapping a clip's speech − the stream's start + that clip's true speech onset.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer.bench.audio import StreamAudio


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 1)


def read_receipts(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


def window_receipts(receipts: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[float, dict[str, Any]]]:
    """First receipt of each window record by (stream, seq): QoS 1 may deliver twice."""
    first: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
    for r in receipts:
        p = r["payload"]
        if r["topic"].endswith("/window") and isinstance(p, dict) and p.get("type") == "window":
            key = (str(p["stream"]), int(p["seq"]))
            if key not in first:
                first[key] = (float(r["t"]), p)
    return first


def latencies(
    windows: dict[tuple[str, int], tuple[float, dict[str, Any]]], starts: dict[str, float]
) -> list[float]:
    return [t - (starts[s] + float(p["end"])) for (s, _), (t, p) in windows.items() if s in starts]


def pipeline_latencies(
    windows: dict[tuple[str, int], tuple[float, dict[str, Any]]],
    starts: dict[str, float],
    ready: dict[str, dict[str, float]],
) -> list[float]:
    """Receipt − capture time of the chunk that completed the window (what the pipeline adds)."""
    out = []
    for (s, _), (t, p) in windows.items():
        r = ready.get(s, {}).get(str(p["window"]))
        if s in starts and r is not None:
            out.append(t - (starts[s] + r))
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "p50": _ms(percentile(values, 50)),
        "p95": _ms(percentile(values, 95)),
        "max": _ms(max(values) if values else None),
        "n": len(values),
    }


def onset_delays(
    windows: dict[tuple[str, int], tuple[float, dict[str, Any]]],
    starts: dict[str, float],
    audio: dict[str, StreamAudio],
) -> tuple[list[float], int]:
    """Per clip: first window receipt overlapping its speech − its onset's wall time; and clips missed."""
    by_stream: dict[str, list[tuple[float, float, float]]] = {}
    for (s, _), (t, p) in windows.items():
        by_stream.setdefault(s, []).append((float(p["start"]), float(p["end"]), t))
    delays: list[float] = []
    missed = 0
    for sid, a in audio.items():
        if sid not in starts:
            continue
        recs = by_stream.get(sid, [])
        for onset, offset in a.speech:
            hits = [t for (ws, we, t) in recs if ws < offset and we > onset]
            if hits:
                delays.append(min(hits) - (starts[sid] + onset))
            else:
                missed += 1
    return delays, missed


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu_model": model, "cores": os.cpu_count(), "usable_cores": affinity, "load_avg": load}


def summarize(
    trial: dict[str, Any],
    receipts: list[dict[str, Any]],
    audio: dict[str, StreamAudio],
    n_streams: int,
) -> dict[str, Any]:
    """The bench's figures for one trial (without the run settings, which the caller adds)."""
    starts = {str(k): float(v) for k, v in trial["starts"].items()}
    windows = window_receipts(receipts)
    lat = latencies(windows, starts)
    pipe = pipeline_latencies(windows, starts, trial.get("ready", {}))
    onset, missed = onset_delays(windows, starts, audio)
    b = trial["batcher"]
    wall = max(trial["wall_s"], 1e-9)
    cpu = trial["cpu_s"]
    engine_cpu = trial["engine_thread_cpu_s"] + trial["engine_pool_cpu_s"]
    n = max(n_streams, 1)
    return {
        "windows_scored": b["scored"],
        "windows_dropped": b["dropped"],
        "windows_failed": b["failed"],
        "windows_received": len(windows),
        "windows_missing": max(0, b["scored"] - len(windows)),
        "latency_ms": _stats(lat),
        "pipeline_latency_ms": _stats(pipe),
        "onset_to_first_emotion_ms": {
            "p50": _ms(percentile(onset, 50)),
            "p95": _ms(percentile(onset, 95)),
            "max": _ms(max(onset) if onset else None),
            "n": len(onset),
            "missed": missed,
        },
        "cpu": {
            "process_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "util": round(cpu / wall, 4),
            "per_stream": round(cpu / wall / n, 4),
            "engine_s": round(engine_cpu, 3),
            "engine_thread_s": round(trial["engine_thread_cpu_s"], 3),
            "engine_pool_s": round(trial["engine_pool_cpu_s"], 3),
            "non_engine_per_stream": round(max(0.0, cpu - engine_cpu) / wall / n, 4),
            # the event loop runs sources, VAD, windows, smoothing and sinks: near 1.0 it is the bottleneck
            "loop_thread_util": round(trial.get("loop_thread_cpu_s", 0.0) / wall, 4),
        },
        "peak_rss_mb": round(trial["peak_rss_kb"] / 1024.0, 1),
        "batches": {
            "batches": b["batches"],
            "engine_calls": trial["engine_calls"]["calls"],
            "mean_batch": trial["engine_calls"]["mean_batch"],
            "max_batch_seen": b["max_batch_seen"],
            "mean_call_ms": trial["engine_calls"]["mean_call_ms"],
            "max_call_ms": trial["engine_calls"]["max_call_ms"],
        },
        "mqtt": {k: trial["mqtt"][k] for k in ("published", "dropped")},
        "logs": {k: trial["logs"][k] for k in ("written", "dropped", "errors")},
        "audio_s": round(trial["audio_s"], 1),
    }
