"""A client pushing a recording into a TCP source at full speed (``sendall``), against the real CLI and a
real Mosquitto: without backpressure the audio the pipeline could not keep up with is dropped and
counted; with ``?backpressure=1`` TCP flow control slows the client and every sample is scored."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tests.daemon_helpers import base_args, read_logs, start_cli, wait_until
from tests.fault_report import report
from tests.fixtures_mqtt import MosquittoServer, Subscriber, free_port

SR = 16000


def recording(speech_wav: Path, tmp: Path, seconds: float = 18.0) -> Path:
    """``seconds`` of real speech (the fixture's speech repeated), 16 kHz s16."""
    x, _ = sf.read(speech_wav, dtype="int16")
    reps = int(np.ceil(seconds * SR / len(x)))
    out = tmp / "push.wav"
    sf.write(out, np.tile(x, reps)[: round(seconds * SR)], SR, subtype="PCM_16")
    return out


def push(port: int, pcm: bytes) -> None:
    """Connect (once the daemon listens), ``sendall`` the whole recording, hang up."""
    for _ in range(600):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    else:
        raise AssertionError("the daemon never listened on its TCP source port")
    with sock:
        sock.sendall(pcm)


async def run_push(
    mosquitto: MosquittoServer, sub: Subscriber, run: str, engine: Path, wav: Path, tmp: Path, opts: str
) -> tuple[int, dict[str, Any], list[dict[str, Any]], str]:
    """(samples sent, the daemon's last stats, the stream's logged windows, stderr); topics under
    ``<subscriber prefix>/<run>``."""
    x, _ = sf.read(wav, dtype="int16")
    port = free_port()
    logs = tmp / "logs"
    p = await start_cli(
        *base_args(engine, logs, "--source", f"tcp://127.0.0.1:{port}?id=push{opts}"),
        "--mqtt",
        mosquitto.url,
        "--prefix",
        f"{sub.prefix}/{run}",
        "--set",
        "daemon.stats_interval_s=0.2",
    )
    try:
        await asyncio.to_thread(push, port, x.astype("<i2").tobytes())
        await wait_until(lambda: ended(sub, run), 90, "the pushed stream to end")
        # the counters while the daemon runs on, its queue empty (once read as 0 whenever it was empty)
        await wait_until(lambda: any(s["streams_ended"] for s in stats(sub, run)), 10, "stats after the end")
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
    finally:
        await p.kill()
    last = next(s for s in stats(sub, run) if s["streams_ended"])
    windows = [r for recs in read_logs(logs).values() for r in recs if r["type"] == "window"]
    return len(x), last, windows, p.stderr.decode()


def ended(sub: Subscriber, run: str) -> bool:
    states = [
        m for m in sub.messages if m.topic.startswith(f"{sub.prefix}/{run}/") and m.topic.endswith("/state")
    ]
    return any(m.payload and m.json()["status"] == "ended" for m in states)


def stats(sub: Subscriber, run: str) -> list[dict[str, Any]]:
    return [m.json() for m in sub.on(f"{run}/stats")]


async def test_pushed_tcp_audio_is_dropped_and_counted_or_slowed_with_backpressure(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    wav = recording(speech_wav, tmp_path)

    sent, stats, windows, stderr = await run_push(
        mosquitto, subscriber, "a", tiny_engine_dir, wav, tmp_path / "a", ""
    )
    src = stats["sources"]["push"]
    ((sid, st),) = stats["streams"].items()
    processed = round(st["audio_s"] * SR)
    figures = {
        "sent_s": sent / SR,
        "processed_s": st["audio_s"],
        "dropped_s": src["samples_dropped"] / SR,
        "chunks_dropped": src["chunks_dropped"],
        "windows": len(windows),
    }
    assert src["chunks_dropped"] > 0, (stats, stderr)  # 18 s pushed at once into a 12.8 s queue
    assert processed + src["samples_dropped"] == sent  # every sample scored or counted
    assert f"stream {sid}: the pipeline is behind the client" in stderr
    assert "of its audio was dropped" in stderr

    sent_bp, stats_bp, windows_bp, stderr_bp = await run_push(
        mosquitto, subscriber, "b", tiny_engine_dir, wav, tmp_path / "b", "&backpressure=1"
    )
    src_bp = stats_bp["sources"]["push"]
    ((_, st_bp),) = stats_bp["streams"].items()
    figures.update(
        {
            "bp_processed_s": st_bp["audio_s"],
            "bp_chunks_dropped": src_bp["chunks_dropped"],
            "bp_windows": len(windows_bp),
            "bp_windows_dropped": stats_bp["windows_dropped"],
        }
    )
    report("tcp_push_full_speed", figures)
    assert src_bp["chunks_dropped"] == 0 and src_bp["samples_dropped"] == 0, stats_bp
    assert round(st_bp["audio_s"] * SR) == sent_bp == sent
    assert st_bp["scored"] == st_bp["windows"] and stats_bp["windows_dropped"] == 0
    assert len(windows_bp) > len(windows)
    # the same windows as the recording read as a file (which is never dropped from)
    f = await start_cli(*base_args(tiny_engine_dir, tmp_path / "f", "--source", f"file:{wav}?id=f"))
    assert await f.wait() == 0, f.stderr.decode()
    from_file = [r for r in read_logs(tmp_path / "f")["f"] if r["type"] == "window"]
    assert [(w["start"], w["end"]) for w in windows_bp] == [(w["start"], w["end"]) for w in from_file]
    assert "dropped" not in stderr_bp


def test_backpressure_option_is_for_socket_servers_only() -> None:

    from streamer.sources.base import SourceError
    from streamer.sources.pcm import PcmServerSource
    from streamer.sources.spec import open_source, parse_spec

    assert parse_spec("tcp://127.0.0.1:0?backpressure=1").backpressure
    assert not parse_spec("unix:/tmp/x.sock").backpressure
    src = open_source("unix:/tmp/x.sock?backpressure=yes")
    assert isinstance(src, PcmServerSource) and src.backpressure
    for bad in ("file:x.wav?backpressure=1", "stdin?backpressure=1", "mic:?backpressure=1"):
        with pytest.raises(SourceError, match="backpressure= applies only to tcp:// and unix:"):
            parse_spec(bad)
    with pytest.raises(SourceError, match="not a boolean"):
        parse_spec("tcp://127.0.0.1:0?backpressure=maybe")
