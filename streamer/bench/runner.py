"""Runs bench trials: a subscriber process, a daemon process (``streamer.bench.trial``), then the figures.

The parent only orchestrates (and hosts the embedded broker when mosquitto is absent): the daemon and the
subscriber each run in their own process, so each trial's CPU, peak RSS and thread pools are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.bench.audio import AudioSet
from streamer.bench.metrics import read_receipts, summarize
from streamer.bench.trial import DAEMON_DEFAULTS, TrialSpec

# What --p95-bound-ms bounds: the latency from the window's end in audio time ("window-end", the default),
# which also holds the wait for the rest of the source chunk, or the latency the pipeline adds after the
# chunk that completed a window arrived ("pipeline").
BOUND_ON = ("pipeline", "window-end")


class BenchError(RuntimeError):
    """A trial could not run (daemon or subscriber failed); one line naming what failed."""


@dataclass(frozen=True)
class Settings:
    """What a trial runs apart from the stream count."""

    engine: str | None = None
    backend: str = "onnxruntime"  # "onnxruntime" (ours: batched) | "torch" (research way: batch 1)
    intra_threads: int | None = None
    inter_threads: int | None = None
    max_batch: int = DAEMON_DEFAULTS.max_batch
    max_wait_ms: float = DAEMON_DEFAULTS.max_wait_ms
    max_pending: int = DAEMON_DEFAULTS.max_pending
    workers: int = DAEMON_DEFAULTS.workers
    chunk_ms: float = DAEMON_DEFAULTS.chunk_ms
    warmup: bool = True
    stagger: bool = False  # streams' chunks arrive spread over a chunk period (default: all at once)

    def effective(self) -> Settings:
        """The research way has no batching: one window per call, one call at a time, no waiting."""
        if self.backend == "torch":
            return dataclasses.replace(self, max_batch=1, max_wait_ms=0.0, workers=1)
        return self

    def describe(self) -> dict[str, Any]:
        s = self.effective()
        return {
            "backend": s.backend,
            "threads": {"intra_op": s.intra_threads, "inter_op": s.inter_threads},
            "stagger": s.stagger,
            "batching": {
                "max_batch": s.max_batch,
                "max_wait_ms": s.max_wait_ms,
                "max_pending": s.max_pending,
                "workers": s.workers,
            },
        }


def _tail(data: bytes, n: int = 300) -> str:
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return " ".join(lines[-1].split())[:n] if lines else "no output"


class Runner:
    """Runs trials against one broker with one audio set; ``bound_ms`` decides a trial's ``ok``."""

    def __init__(
        self,
        broker_url: str,
        workdir: Path,
        audio: AudioSet,
        *,
        bound_ms: float = 150.0,
        bound_on: str = "window-end",
        keep: bool = False,
    ) -> None:
        if bound_on not in BOUND_ON:
            raise ValueError(f"bound_on must be one of {BOUND_ON}, got {bound_on!r}")
        self.broker_url = broker_url
        self.bound_on = bound_on
        self.workdir = workdir
        self.audio = audio
        self.bound_ms = bound_ms
        self.keep = keep
        self.python = sys.executable

    async def trial(self, settings: Settings, streams: int) -> dict[str, Any]:
        s = settings.effective()
        files = await asyncio.to_thread(self.audio.streams, streams)
        prefix = f"emotrack-bench-{uuid.uuid4().hex[:10]}"
        receipts_path = self.workdir / f"{prefix}.jsonl"
        log_dir = self.workdir / f"{prefix}-logs"
        spec = TrialSpec(
            files=tuple(str(a.path) for a in files),
            engine=s.engine,
            backend=s.backend,
            intra_threads=s.intra_threads,
            inter_threads=s.inter_threads,
            max_batch=s.max_batch,
            max_wait_ms=s.max_wait_ms,
            max_pending=s.max_pending,
            workers=s.workers,
            chunk_ms=s.chunk_ms,
            mqtt_url=self.broker_url,
            prefix=prefix,
            log_dir=str(log_dir),
            warmup=s.warmup,
            stagger=s.stagger,
        )
        started = datetime.now(UTC).isoformat(timespec="seconds")
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews every figure
        sub = await self._start_subscriber(prefix, receipts_path)
        try:
            trial = await self._run_daemon(spec, self.audio.seconds)
            try:
                await asyncio.wait_for(sub.wait(), 30.0)
            except TimeoutError:
                sub.terminate()
                await sub.wait()
        finally:
            if sub.returncode is None:
                sub.kill()
                await sub.wait()
        receipts = await asyncio.to_thread(read_receipts, receipts_path)
        audio = {f"s{i:03d}": a for i, a in enumerate(files)}
        figures = summarize(trial, receipts, audio, streams)
        if not self.keep:
            receipts_path.unlink(missing_ok=True)
            shutil.rmtree(log_dir, ignore_errors=True)
        lat = figures["pipeline_latency_ms" if self.bound_on == "pipeline" else "latency_ms"]
        ok = (
            lat["p95"] is not None
            and lat["p95"] <= self.bound_ms
            and figures["windows_dropped"] == 0
            and figures["windows_failed"] == 0
            and figures["windows_missing"] == 0
            and figures["mqtt"]["dropped"] == 0
        )
        return {
            "streams": streams,
            "seconds": self.audio.seconds,
            "engine": {**trial["engine"], "path": s.engine or "(bundled default)"},
            **s.describe(),
            **figures,
            "bound": {"p95_ms": self.bound_ms, "on": self.bound_on},
            "ok": ok,
            "measured_at": started,
            "load_avg_at_start": load,
        }

    async def _start_subscriber(self, prefix: str, out: Path) -> asyncio.subprocess.Process:
        sub = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "streamer.bench.subscriber",
            self.broker_url,
            prefix,
            str(out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert sub.stdout is not None and sub.stderr is not None
        try:
            line = await asyncio.wait_for(sub.stdout.readline(), 30.0)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                sub.kill()
            err = await sub.stderr.read()
            await sub.wait()
            raise BenchError(f"bench subscriber could not subscribe at {self.broker_url}: {_tail(err)}")
        return sub

    async def _run_daemon(self, spec: TrialSpec, seconds: float) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "streamer.bench.trial",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(spec.to_json().encode()), seconds + 300.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BenchError(f"bench daemon did not finish within {seconds + 300:.0f} s") from None
        except BaseException:  # interrupted (Ctrl-C): leave no daemon process behind
            if proc.returncode is None:
                proc.kill()
            raise
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
        if not lines:
            raise BenchError(f"bench daemon exited with {proc.returncode}: {_tail(err)}")
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result:
            raise BenchError(f"bench daemon failed: {result['error']}")
        return result
