"""The daemon with a broker down at start or gone mid-stream: it keeps logging and reconnects."""

from __future__ import annotations

from pathlib import Path

from tests.daemon_helpers import base_args, log_windows, payloads, start_cli, wait_until, window_seqs
from tests.fixtures_mqtt import MosquittoServer, Subscriber


async def test_broker_down_at_start_then_up(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    mosquitto.stop()
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            logs,
            "--source",
            f"file:{speech_wav}?id=late&realtime=1",
            "--mqtt",
            mosquitto.url,
            "--prefix",
            mqtt_prefix,
            "--set",
            "mqtt.reconnect_max_s=0.5",
            "--set",
            "mqtt.flush_timeout_s=15",
        )
    )
    try:
        await wait_until(lambda: len(log_windows(logs, "late")) >= 1)  # running and logging, broker down
        assert p.proc.returncode is None
        mosquitto.start()
        assert await p.wait() == 0, p.stderr.decode()
        logged = [w["seq"] for w in log_windows(logs, "late")]
        await subscriber.wait_for(lambda _: window_seqs(payloads(subscriber, "late/window")) == logged, 20)
    finally:
        await p.kill()


async def test_broker_gone_mid_stream_reconnects(
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
            f"file:{speech_wav}?id=gap&realtime=1",
            "--mqtt",
            mosquitto.url,
            "--prefix",
            mqtt_prefix,
            "--set",
            "mqtt.reconnect_max_s=0.5",
            "--set",
            "mqtt.flush_timeout_s=15",
        )
    )
    try:
        await subscriber.wait_for(lambda _: len(subscriber.on("gap/window")) >= 1, 30)
        mosquitto.stop()
        n_logged = len(log_windows(logs, "gap"))
        await wait_until(lambda: len(log_windows(logs, "gap")) > n_logged)  # still logging while it is away
        mosquitto.start()
        assert await p.wait() == 0, p.stderr.decode()
        logged = [w["seq"] for w in log_windows(logs, "gap")]
        await subscriber.wait_for(lambda _: window_seqs(payloads(subscriber, "gap/window")) == logged, 20)
        assert subscriber.on("status")[-1].text == "offline"
    finally:
        await p.kill()
