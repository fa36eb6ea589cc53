"""Helpers for tests that run the real ``emotrack`` CLI as a subprocess (no tracebacks allowed)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer.records import Record
from streamer.sinks.base import StreamEnd
from tests.fixtures_mqtt import Subscriber

REPO = Path(__file__).resolve().parents[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTRACK_") and k != "NOTIFY_SOCKET"}
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamer.cli", *args]


class Proc:
    """An ``emotrack`` subprocess with its output captured."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout = b""
        self.stderr = b""

    async def wait(self, timeout: float = 60) -> int:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        self.stdout, self.stderr = out or b"", err or b""
        assert b"Traceback" not in self.stderr, self.stderr.decode(errors="replace")
        return int(self.proc.returncode or 0)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *cli_cmd(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
        cwd=str(cwd or REPO),
    )
    return Proc(proc)


def read_logs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every JSON-lines log under ``directory`` by stream, in file order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.rglob("*.jsonl")):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if lines:
            out.setdefault(lines[0]["stream"], []).extend(lines)
    return out


def window_seqs(payloads: Sequence[dict[str, Any]]) -> list[int]:
    """Seqs of distinct window records (at-least-once delivery may repeat one)."""
    return sorted({p["seq"] for p in payloads if p.get("type") == "window"})


def base_args(engine: Path, logs: Path, *more: str) -> list[str]:
    """`emotrack run` on `engine` with one intra-op thread, logging to `logs`, plus `more`."""
    return ["run", "--engine", str(engine), "--threads", "1", "--log-dir", str(logs), *more]


def payloads(sub: Subscriber, suffix: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(suffix)]


def log_windows(logs: Path, stream: str) -> list[dict[str, Any]]:
    return [x for x in read_logs(logs).get(stream, []) if x["type"] == "window"]


async def wait_until(pred: Any, timeout: float = 30.0, what: str = "the condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def call_tcp(port: int, pcm: bytes) -> None:
    """One caller of a TCP source: connect once the daemon listens (a probe connection would be a stream of
    its own), send ``pcm``, hang up."""
    for _ in range(600):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            break
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the daemon never listened on its TCP source port")
    w.write(pcm)
    await w.drain()
    w.close()
    await w.wait_closed()


def run_cli(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``emotrack ARGS`` run to the end, its output captured as text."""
    return subprocess.run(
        cli_cmd(*args), capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=timeout
    )


class CollectSink:
    """A sink that keeps every record a daemon run in-process emits, for the test to read afterwards."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def start(self) -> None: ...

    async def emit(self, record: Record) -> None:
        self.records.append(record)

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None: ...

    async def close(self) -> None: ...


async def send_pcm(port: int, path: Path) -> None:
    """Push a 16 kHz mono file to a raw-PCM TCP source (s16le) as fast as TCP allows, then close:
    live input that nothing paces, so an overloaded daemon has to drop some of it."""
    import numpy as np
    import soundfile as sf

    x, _ = sf.read(path, dtype="float32")
    _, w = await asyncio.open_connection("127.0.0.1", port)
    w.write((np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    await w.drain()
    w.close()
    await w.wait_closed()
