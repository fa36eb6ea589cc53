"""One ``emotrack bench`` invocation: broker, audio, then single runs, sweeps, ``--find-max``, ``--compare``.

Every combination of the swept settings (threads, max_batch, max_wait) is run; with ``compare`` each is
run ours (ONNX Runtime, batched) and the research way (PyTorch eager, one window per call) on the same
files, and the ratio of sustained streams is reported.
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

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BenchRequest:
    streams: int = 4
    seconds: float = 20.0
    base: Settings = field(default_factory=Settings)
    threads: Sequence[tuple[int | None, int | None]] = ((None, None),)
    max_batch: Sequence[int] = (32,)
    max_wait_ms: Sequence[float] = (20.0,)
    find_max: bool = False
    compare: bool = False
    max_streams: int = 256
    resolution: float = 0.1
    p95_bound_ms: float = 150.0
    bound_on: str = "pipeline"
    mqtt_url: str | None = None
    corpora: Path | None = None
    workdir: Path | None = None

    def settings(self) -> list[Settings]:
        out = []
        for (intra, inter), mb, mw in itertools.product(self.threads, self.max_batch, self.max_wait_ms):
            out.append(
                dataclasses.replace(
                    self.base, intra_threads=intra, inter_threads=inter, max_batch=mb, max_wait_ms=mw
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
            for s in req.settings():
                if req.compare:
                    ours = await _measure(req, runner, dataclasses.replace(s, backend="onnxruntime"), report)
                    research = await _measure(req, runner, dataclasses.replace(s, backend="torch"), report)
                    results.append(_comparison(req, ours, research))
                else:
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


def _comparison(req: BenchRequest, ours: dict[str, Any], research: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ours": ours, "research": research}
    if req.find_max:
        a, b = ours["max_streams"], research["max_streams"]
        out["sustained_streams"] = {"ours": a, "research": b, "ratio": round(a / b, 2) if b else None}
    return out
