"""One ``emotrack bench`` invocation: broker, audio, then single runs, sweeps, ``--find-max``, ``--compare``.

Every combination of the swept settings (threads, max_batch, max_wait, workers) is run. With ``compare``,
ours (ONNX Runtime, batched) runs under each of them and the research way (PyTorch eager, one window per
call, one call at a time) under each distinct thread setting, on the same files; the best of each side
is compared (ratio of sustained streams).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.bench.audio import AudioSet
from streamer.bench.broker import BenchBroker
from streamer.bench.metrics import machine_info
from streamer.bench.runner import Runner, Settings
from streamer.bench.search import find_max
from streamer.bench.trial import DAEMON_DEFAULTS

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BenchRequest:
    streams: int = 4
    seconds: float = 20.0
    base: Settings = field(default_factory=Settings)
    threads: Sequence[tuple[int | None, int | None]] = ((None, None),)
    max_batch: Sequence[int] = (DAEMON_DEFAULTS.max_batch,)
    max_wait_ms: Sequence[float] = (DAEMON_DEFAULTS.max_wait_ms,)
    workers: Sequence[int] = (DAEMON_DEFAULTS.workers,)
    find_max: bool = False
    compare: bool = False
    max_streams: int = 256
    resolution: float = 0.1
    p95_bound_ms: float = 150.0
    bound_on: str = "window-end"
    mqtt_url: str | None = None
    corpora: Path | None = None
    workdir: Path | None = None

    def settings(self) -> list[Settings]:
        out = []
        grid = itertools.product(self.threads, self.max_batch, self.max_wait_ms, self.workers)
        for (intra, inter), mb, mw, nw in grid:
            out.append(
                dataclasses.replace(
                    self.base,
                    intra_threads=intra,
                    inter_threads=inter,
                    max_batch=mb,
                    max_wait_ms=mw,
                    workers=nw,
                )
            )
        return out


async def _measure(req: BenchRequest, runner: Runner, s: Settings, report: Report) -> dict[str, Any]:
    if not req.find_max:
        r = await runner.trial(s, req.streams)
        report(r)
        return r

    async def trial(n: int) -> dict[str, Any]:
        return await runner.trial(s, n)

    found = await find_max(
        trial, start=req.streams, cap=req.max_streams, resolution=req.resolution, report=report
    )
    bound = {"p95_ms": req.p95_bound_ms, "on": req.bound_on}
    return {**s.describe(), "bound": bound, **found}


async def run_bench(req: BenchRequest, report: Report) -> dict[str, Any]:
    """Runs everything the request asks for and returns the one JSON object the command prints."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="emotrack-bench-", dir=req.workdir) as tmp:
        work = Path(tmp)
        audio = await _audio(work, req)
        async with BenchBroker(req.mqtt_url) as broker:
            runner = Runner(broker.url, work, audio, bound_ms=req.p95_bound_ms, bound_on=req.bound_on)
            results = []
            if req.compare:
                results.append(await _compare(req, runner, report))
            else:
                for s in req.settings():
                    results.append(await _measure(req, runner, s, report))
            header = {
                "bench": "emotrack",
                "started": started,
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "broker": broker.kind,
                "audio": {"source": audio.source, "seconds_per_stream": req.seconds},
                "machine": machine_info(),
            }
    if len(results) == 1:
        return {**header, **results[0]}
    return {**header, "runs": results}


async def _audio(work: Path, req: BenchRequest) -> AudioSet:
    return await asyncio.to_thread(AudioSet, work / "audio", req.seconds, req.corpora)


async def _compare(req: BenchRequest, runner: Runner, report: Report) -> dict[str, Any]:
    """Ours under every swept setting, the research way under each distinct setting it can use (its
    thread counts: it has no batching and makes one call at a time), then best against best."""
    ours = [
        await _measure(req, runner, dataclasses.replace(s, backend="onnxruntime"), report)
        for s in req.settings()
    ]
    research_settings: list[Settings] = []
    for s in req.settings():
        r = dataclasses.replace(s, backend="torch").effective()
        if r not in research_settings:
            research_settings.append(r)
    research = [await _measure(req, runner, r, report) for r in research_settings]
    return _comparison(req, ours, research)


def _comparison(
    req: BenchRequest, ours: list[dict[str, Any]], research: list[dict[str, Any]]
) -> dict[str, Any]:
    key = "max_streams" if req.find_max else "streams"
    best_ours = max(ours, key=lambda r: r.get(key, 0))
    best_research = max(research, key=lambda r: r.get(key, 0))
    out: dict[str, Any] = {"ours": best_ours, "research": best_research}
    if len(ours) > 1 or len(research) > 1:
        out["all_runs"] = {"ours": ours, "research": research}
    if req.find_max:
        a, b = best_ours["max_streams"], best_research["max_streams"]
        out["sustained_streams"] = {"ours": a, "research": b, "ratio": round(a / b, 2) if b else None}
    return out
