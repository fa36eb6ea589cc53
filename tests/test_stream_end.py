"""``stream_end`` says why each stream ended and how much audio it had, and ``emotrack report`` uses that
duration. One real daemon: a file read to its end, a TCP client that hangs up, and one still connected
when SIGTERM comes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import soundfile as sf

from tests.daemon_helpers import base_args, cli_cmd, cli_env, read_logs, start_cli, wait_until
from tests.fixtures_mqtt import free_port


async def connect(port: int) -> asyncio.StreamWriter:
    for _ in range(600):
        try:
            return (await asyncio.open_connection("127.0.0.1", port))[1]
        except ConnectionRefusedError:
            await asyncio.sleep(0.05)
    raise AssertionError("the daemon never listened on its TCP source port")


def ends(logs: Path) -> dict[str, dict[str, object]]:
    return {s: lines[-1] for s, lines in read_logs(logs).items() if lines[-1]["type"] == "stream_end"}


async def test_stream_end_records_reason_and_audio_seconds(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    x, sr = sf.read(speech_wav, dtype="int16")
    pcm = x.astype("<i2").tobytes()
    port = free_port()
    logs = tmp_path / "logs"
    p = await start_cli(
        *base_args(
            tiny_engine_dir, logs,
            "--source", f"file:{speech_wav}?id=file",
            "--source", f"tcp://127.0.0.1:{port}?id=tcp&backpressure=1",
        )
    )  # fmt: skip
    try:
        w = await connect(port)
        w.write(pcm)
        await w.drain()
        w.close()  # hangs up after the whole recording
        await wait_until(lambda: len(ends(logs)) == 2, 60, "the file and the first client to end")
        w2 = await connect(port)
        w2.write(pcm[: len(pcm) // 2])
        await w2.drain()
        await wait_until(lambda: len(read_logs(logs)) == 3, 60, "the second client's first record")
        await asyncio.sleep(0.5)
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
        w2.close()
    finally:
        await p.kill()
    end = ends(logs)
    assert len(end) == 3, end
    by_reason = {str(e["reason"]): e for e in end.values()}
    assert set(by_reason) == {"eof", "disconnected", "sigterm"}, end
    assert by_reason["eof"]["stream"] == "file"
    assert by_reason["eof"]["audio_s"] == by_reason["disconnected"]["audio_s"] == round(len(x) / sr, 3)
    assert 0 < float(by_reason["sigterm"]["audio_s"]) <= len(x) / sr / 2  # type: ignore[arg-type]

    # the report's duration is the file's, not the end of its last window (the file ends in silence)
    file_log = next((logs / "file").glob("*.jsonl"))
    out = subprocess.run(
        cli_cmd("report", str(file_log)), capture_output=True, env=cli_env(), timeout=60, check=True
    ).stdout.decode()
    last_window = max(r["end"] for r in read_logs(logs)["file"] if r["type"] == "window")
    assert len(x) / sr - last_window > 0.2
    assert f"of {len(x) / sr:.1f} s" in out, out
