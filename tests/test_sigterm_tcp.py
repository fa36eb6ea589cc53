"""SIGTERM under load, against the real CLI: one TCP client sending live and three pushing recordings at
full speed (``backpressure=1``: the pipeline runs flat out on all four), all connected when the signal
comes. A clean drain (every stream's records in order, each
log closed with ``stream_end``), exit 0, and no traceback (it once printed asyncio's CancelledError)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import soundfile as sf

from tests.daemon_helpers import base_args, read_logs, start_cli, wait_until
from tests.fault_report import report
from tests.fixtures_mqtt import free_port


async def connect(port: int) -> asyncio.StreamWriter:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            return writer
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    raise AssertionError("the daemon never listened on its TCP source port")


async def test_sigterm_under_load_drains_without_a_traceback(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    pcm = sf.read(str(speech_wav), dtype="int16")[0].astype("<i2").tobytes()
    port = free_port()
    logs = tmp_path / "logs"
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            logs,
            "--source",
            f"tcp://127.0.0.1:{port}?id=call&backpressure=1",
            "--stdout",
            "json",
        )
    )
    writers: list[asyncio.StreamWriter] = []
    sending = True

    async def live(w: asyncio.StreamWriter) -> None:  # 0.1 s of audio every 0.05 s
        i = 0
        while sending:
            w.write(pcm[i : i + 3200] if i < len(pcm) else bytes(3200))
            await w.drain()
            i += 3200
            await asyncio.sleep(0.05)

    async def pusher(w: asyncio.StreamWriter) -> None:  # as fast as TCP takes it
        while sending:
            w.write(pcm)
            await w.drain()

    try:
        writers.append(await connect(port))
        feeders = [asyncio.create_task(live(writers[0]))]
        await wait_until(lambda: len(read_logs(logs)) == 1, 60, "the live client's first record")
        for _ in range(3):
            writers.append(await connect(port))
            feeders.append(asyncio.create_task(pusher(writers[-1])))
        await wait_until(lambda: len(read_logs(logs)) == 4, 60, "every client's first record")
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        p.signal(signal.SIGTERM)
        rc = await p.wait()  # also asserts no "Traceback" on stderr
        drain_s = time.monotonic() - t0
        sending = False
        await asyncio.gather(*feeders, return_exceptions=True)
    finally:
        for w in writers:
            w.close()
        await p.kill()
    err = p.stderr.decode()
    assert rc == 0, err
    assert "Traceback" not in err and "CancelledError" not in err and "ERROR" not in err, err
    out = [json.loads(x) for x in p.stdout.decode().splitlines()]
    logs_by_stream = read_logs(logs)
    assert len(logs_by_stream) == 4
    records = 0
    for stream, lines in logs_by_stream.items():
        logged = [r["seq"] for r in lines if r["type"] in ("window", "utterance")]
        printed = [
            r["seq"] for r in out if r.get("stream") == stream and r["type"] in ("window", "utterance")
        ]
        assert logged == printed == list(range(len(logged))), (stream, logged, printed)  # all, in order
        assert lines[-1]["type"] == "stream_end", stream
        records += len(logged)
    report("sigterm_under_load", {"clients": 4, "records": records, "exit": rc, "drain_s": round(drain_s, 2)})
