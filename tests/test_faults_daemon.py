"""Daemon faults: ``emotrack run`` killed with SIGKILL and restarted, and a stalled network between
the daemon and a real Mosquitto (a loopback TCP proxy that stops forwarding but holds its sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from streamer.sinks.spool import Spool, SpoolConfig
from tests.daemon_helpers import Proc, base_args, start_cli, wait_until
from tests.fault_report import delivery_figures, report
from tests.fixtures_mqtt import MosquittoServer, Subscriber


def run_args(engine: Path, wav: Path, stream: str, url: str, prefix: str, tmp: Path, *more: str) -> list[str]:
    return base_args(
        engine,
        tmp / "logs",
        "--source",
        f"file:{wav}?id={stream}&realtime=1",
        "--mqtt",
        url,
        "--prefix",
        prefix,
        "--set",
        f"daemon.state_directory={tmp / 'state'}",
        "--set",
        "mqtt.reconnect_max_s=0.5",
        "--set",
        "mqtt.flush_timeout_s=20",
        *more,
    )


def logged(logs: Path, stream: str) -> list[dict[str, Any]]:
    """Window and utterance records from every log file; only a torn last line may be unreadable."""
    out = []
    for path in sorted(logs.rglob("*.jsonl")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                assert i == len(lines) - 1, f"{path}: unreadable line {i + 1} before the end"
                continue
            if rec.get("type") in ("window", "utterance") and rec["stream"] == stream:
                out.append(rec)
    return out


def received(sub: Subscriber, stream: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.messages if m.topic.endswith((f"{stream}/window", f"{stream}/utterance"))]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def test_sigkill_mid_stream_then_restart_loses_no_seq(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    args = run_args(tiny_engine_dir, speech_wav, "k", mosquitto.url, mqtt_prefix, tmp_path)
    first = await start_cli(*args)
    try:
        await wait_until(lambda: len(received(subscriber, "k")) >= 3, 60, "first windows")
        first.proc.kill()  # SIGKILL: no drain, no clean close of anything
        await first.proc.wait()
    finally:
        await first.kill()
    run1 = {r["seq"] for r in logged(tmp_path / "logs", "k")}
    spool = Spool(SpoolConfig(tmp_path / "state" / "spool"))  # readable after the crash
    spool.close()
    second = await start_cli(*args)
    assert await second.wait(90) == 0, second.stderr.decode()
    everything = logged(tmp_path / "logs", "k")
    run2 = {r["seq"] for r in everything} - run1
    assert run1 and run2 and max(run1) < min(run2)  # the restart resumed after the old seqs
    await subscriber.wait_for(lambda _: run1 | run2 <= {r["seq"] for r in received(subscriber, "k")}, 30)
    got = received(subscriber, "k")
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for r in got:
        by_seq.setdefault(r["seq"], []).append(r)
    for seq, copies in by_seq.items():  # a duplicate is the same record again, never another one
        assert all(c == copies[0] for c in copies), f"seq {seq} names different records"
    figures = report(
        "daemon_sigkill_restart",
        {
            **delivery_figures(run1 | run2, [r["seq"] for r in got]),
            "run1_logged": len(run1),
            "run2_logged": len(run2),
            "seq_gap_after_crash": min(run2) - max(run1) - 1,
        },
    )
    assert figures["lost"] == 0
    assert Spool(SpoolConfig(tmp_path / "state" / "spool")).pending == 0


class StallingProxy:
    """Forwards loopback TCP to a target; ``stall()`` stops moving bytes but keeps sockets open."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.forwarding = asyncio.Event()
        self.forwarding.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.bytes = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self.forwarding.clear()

    def resume(self) -> None:
        self.forwarding.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)
        pumps = [
            asyncio.create_task(self._pump(reader, up_w)),
            asyncio.create_task(self._pump(up_r, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for t in pumps:
            t.cancel()
        for w in (writer, up_w):
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            await self.forwarding.wait()  # stalled: nothing is read, so nothing moves either way
            data = await src.read(65536)
            if not data:
                return
            await self.forwarding.wait()
            dst.write(data)
            await dst.drain()
            self.bytes += len(data)


async def test_stalled_network_capture_goes_on_memory_bounded_then_delivers(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    proxy = StallingProxy(mosquitto.host, mosquitto.port)
    await proxy.start()
    args = run_args(
        tiny_engine_dir,
        speech_wav,
        "st",
        f"mqtt://127.0.0.1:{proxy.port}",
        mqtt_prefix,
        tmp_path,
        "--set",
        "mqtt.keepalive=3",
        "--set",
        "mqtt.timeout_s=2",
    )
    p: Proc = await start_cli(*args)
    try:
        await wait_until(lambda: len(received(subscriber, "st")) >= 1, 60, "first window")
        before = rss_kb(p.proc.pid)
        proxy.stall()
        n = len(logged(tmp_path / "logs", "st"))
        peak = before
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while len(logged(tmp_path / "logs", "st")) < n + 4:  # capture and scoring go on
            assert loop.time() < end, "no new records logged while the network was stalled"
            peak = max(peak, rss_kb(p.proc.pid))
            await asyncio.sleep(0.2)
        during = len(received(subscriber, "st"))
        proxy.resume()
        assert await p.wait(90) == 0, p.stderr.decode()
    finally:
        await p.kill()
        await proxy.close()
    seqs = {r["seq"] for r in logged(tmp_path / "logs", "st")}
    await subscriber.wait_for(lambda _: seqs <= {r["seq"] for r in received(subscriber, "st")}, 30)
    figures = report(
        "stalled_network",
        {
            **delivery_figures(seqs, [r["seq"] for r in received(subscriber, "st")]),
            "received_during_stall_or_before": during,
            "rss_before_kb": before,
            "rss_peak_during_stall_kb": peak,
        },
    )
    assert figures["lost"] == 0
    assert peak - before < 64 * 1024  # bounded: records wait on disk, not in memory


async def test_clean_restart_continues_seq_without_gap(
    mosquitto: MosquittoServer, mqtt_prefix: str, tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    args = run_args(tiny_engine_dir, speech_wav, "c", mosquitto.url, mqtt_prefix, tmp_path)
    args = [a.replace("&realtime=1", "") for a in args]
    for _ in range(2):
        p = await start_cli(*args)
        assert await p.wait(90) == 0, p.stderr.decode()
    seqs = sorted(r["seq"] for r in logged(tmp_path / "logs", "c"))
    assert seqs == list(range(len(seqs))) and len(seqs) >= 12  # two runs, one unbroken sequence
    state = json.loads((tmp_path / "state" / "seq.json").read_text())
    assert state["next"]["c"] == len(seqs)
