"""The daemon end to end: the real CLI in a subprocess, real Mosquitto/amqtt, real files and logs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemon_helpers import (
    base_args,
    call_tcp,
    cli_env,
    log_windows,
    payloads,
    read_logs,
    start_cli,
    wait_until,
    window_seqs,
)
from tests.fixtures_mqtt import MosquittoServer, Subscriber, free_port, port_accepts
from tests.shared_data import MIC_MISSING, alsa_file_mic

WINDOW_FIELDS = {
    "type",
    "schema",
    "stream",
    "seq",
    "utterance",
    "window",
    "start",
    "end",
    "wall_time",
    "raw",
    "smoothed",
    "engine",
}
ALSA_FILE_MIC = alsa_file_mic() or Path("alsa-file-mic")


async def test_run_publishes_every_window_in_order_and_logs(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            logs,
            "--source",
            f"file:{speech_wav}?id=talk",
            "--mqtt",
            mosquitto.url,
            "--prefix",
            mqtt_prefix,
        )
    )
    assert await p.wait() == 0, p.stderr.decode()
    logged = log_windows(logs, "talk")
    assert len(logged) >= 6
    await subscriber.wait_for(
        lambda _: (
            len(subscriber.on("talk/window")) >= len(logged)
            and bool(subscriber.on("status"))
            and bool(subscriber.on("stats"))
        )
    )
    got = payloads(subscriber, "talk/window")
    assert [w["seq"] for w in got] == [w["seq"] for w in logged]  # same windows, same order
    numbered = sorted(got + payloads(subscriber, "talk/utterance"), key=lambda r: r["seq"])
    assert [r["seq"] for r in numbered] == list(range(len(numbered)))  # consecutive, no gaps
    arrival = [m.json()["seq"] for m in subscriber.messages if m.topic.endswith(("/window", "/utterance"))]
    assert arrival == sorted(arrival)  # published in stream order
    for w in got:
        assert set(w) >= WINDOW_FIELDS and w["stream"] == "talk" and w["schema"] == 1
        assert set(w["raw"]["scores"]) == {"neutral", "happy", "sad", "angry"}
    states = subscriber.on("talk/state")
    assert states[-1].json()["status"] == "ended"
    assert subscriber.on("status")[-1].text == "offline"
    stats = payloads(subscriber, "stats")[-1]
    assert stats["windows_scored"] == len(logged) and stats["windows_dropped"] == 0
    assert "talk" in stats["sources"] and stats["streams"]["talk"]["scored"] == len(logged)
    session = read_logs(logs)["talk"]
    assert session[0]["type"] == "session" and session[-1]["type"] == "stream_end"
    log_file = next(logs.rglob("*.jsonl"))
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"


async def test_embedded_broker_serves_subscribers(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    port = free_port()
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            tmp_path / "logs",
            "--source",
            f"file:{speech_wav}?id=emb&realtime=1",
            "--broker-port",
            str(port),
        )
    )
    try:
        await wait_until(lambda: port_accepts("127.0.0.1", port))
        async with Subscriber("127.0.0.1", port, "emotrack") as sub:
            await sub.wait_for(lambda _: len(sub.on("emb/window")) >= 2, timeout=30)
            assert sub.on("status")[0].text == "online"
            w = sub.on("emb/window")[0].json()
            assert w["type"] == "window" and w["stream"] == "emb"
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
    finally:
        await p.kill()


async def test_sigterm_drains_and_notifies_systemd(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    received: list[str] = []

    def drain_socket() -> None:
        while True:
            try:
                received.append(sock.recv(4096).decode())
            except BlockingIOError:
                return

    async def reader() -> None:  # like systemd: read notifications as they come
        while True:
            drain_socket()
            await asyncio.sleep(0.05)

    read_task = asyncio.create_task(reader())
    env = cli_env({"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "400000"})
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            logs,
            "--source",
            f"file:{speech_wav}?id=term&realtime=1",
            "--mqtt",
            mosquitto.url,
            "--prefix",
            mqtt_prefix,
        ),
        env=env,
    )
    try:
        await subscriber.wait_for(lambda _: len(subscriber.on("term/window")) >= 1, 30)
        drain_socket()
        assert any("READY=1" in m for m in received)
        await wait_until(lambda: (drain_socket(), any("WATCHDOG=1" in m for m in received))[1], 10)
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
        drain_socket()
        assert any("STOPPING=1" in m for m in received)
        logged = log_windows(logs, "term")
        await subscriber.wait_for(lambda _: subscriber.on("status")[-1].text == "offline", 10)
        assert window_seqs(payloads(subscriber, "term/window")) == [w["seq"] for w in logged]
        assert logged[-1]["end"] < 7.5  # stopped before the end of the ~8 s file
        session = read_logs(logs)["term"]
        assert session[-1]["type"] == "stream_end"
        utts = [x for x in session if x["type"] == "utterance"]
        assert utts and utts[-1]["seq"] > logged[-1]["seq"]  # the open utterance was closed by the drain
        assert subscriber.on("term/state")[-1].json()["status"] == "ended"
    finally:
        read_task.cancel()
        sock.close()
        await p.kill()


@pytest.mark.skipif(alsa_file_mic() is None, reason=MIC_MISSING)
async def test_microphone_end_to_end(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    home = tmp_path / "home"
    subprocess.run([str(ALSA_FILE_MIC), str(speech_wav), str(home)], check=True, capture_output=True)
    env = cli_env({"HOME": str(home)})
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            tmp_path / "logs",
            "--source",
            "mic:filemic?id=mic&buffer_s=120",  # the tool is not paced: keep it all
            "--mqtt",
            mosquitto.url,
            "--prefix",
            mqtt_prefix,
        ),
        env=env,
    )
    try:
        await subscriber.wait_for(lambda _: len(subscriber.on("mic/window")) >= 2, 60)
        w = subscriber.on("mic/window")[0].json()
        assert w["stream"] == "mic" and w["raw"]["label"] in {"neutral", "happy", "sad", "angry"}
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
    finally:
        await p.kill()
    assert os.path.isdir(tmp_path / "logs" / "mic")


def test_sd_notify_abstract_socket_and_off_without_systemd() -> None:
    from streamer.sdnotify import SdNotifier

    name = f"emotrack-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        n = SdNotifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "30000000"})
        assert n.enabled and n.watchdog_interval == 15.0
        assert n.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        assert n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        n.close()
    finally:
        sock.close()
    off = SdNotifier({})
    assert not off.enabled and off.watchdog_interval is None and not off.ready()
    other = SdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # the watchdog is meant for another process


async def test_watchdog_pets_only_while_the_pipeline_advances(tmp_path: Path) -> None:
    from streamer.sdnotify import Heartbeat, SdNotifier, watchdog_loop

    path = tmp_path / "wd.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)

    def pets() -> int:
        n = 0
        while True:
            try:
                n += sock.recv(64) == b"WATCHDOG=1"
            except BlockingIOError:
                return n

    hb, busy = Heartbeat(), [True]
    task = asyncio.create_task(
        watchdog_loop(SdNotifier({"NOTIFY_SOCKET": str(path)}), hb, lambda: busy[0], 0.05)
    )
    try:
        await asyncio.sleep(0.3)  # busy and stalled: no pets
        assert pets() == 0
        for _ in range(6):  # busy and advancing: pets
            hb.beat()
            await asyncio.sleep(0.06)
        assert pets() >= 2
        busy[0] = False  # idle (nothing pending): pets
        await asyncio.sleep(0.3)
        assert pets() >= 2
    finally:
        task.cancel()
        sock.close()


async def test_raw_pcm_over_tcp(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    import soundfile as sf

    pcm = sf.read(str(speech_wav), dtype="int16")[0].astype("<i2").tobytes()
    port = free_port()
    p = await start_cli(
        *base_args(tiny_engine_dir, tmp_path / "logs", "--source", f"tcp://127.0.0.1:{port}?id=phone"),
        "--mqtt",
        mosquitto.url,
        "--prefix",
        mqtt_prefix,
    )
    try:
        await call_tcp(port, pcm)
        await subscriber.wait_for(
            lambda ms: sum(m.topic.endswith("/utterance") and "/phone-" in m.topic for m in ms) >= 2, 30
        )
        p.signal(signal.SIGTERM)
        assert await p.wait() == 0, p.stderr.decode()
        (stream,) = {m.json()["stream"] for m in subscriber.messages if m.topic.endswith("/window")}
        assert stream.startswith("phone-")  # a client's id: the source's, the daemon's start, its number
        windows = payloads(subscriber, f"{stream}/window")
        assert len(windows) >= 6 and [w["seq"] for w in windows] == sorted(w["seq"] for w in windows)
    finally:
        await p.kill()
