"""``emotrack listen --live`` against a real Mosquitto: rendered in-process to a recording console,
and the real CLI in a pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import time

import aiomqtt
import pytest

from streamer.liveview import LiveModel, live, spark
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.mqtt_config import MqttConfig
from tests.daemon_helpers import cli_cmd, cli_env
from tests.fixtures_mqtt import MosquittoServer
from tests.sample_records import window
from tests.test_hass import state

pytest.importorskip("rich", reason="the live view needs the .[listen] extra (rich)")


def test_spark() -> None:
    assert spark([-1.0, 0.0, 1.0, None]) == "▁▅█ "
    assert spark([5.0, -5.0]) == "█▁"


async def _publish(url: str, prefix: str, n_windows: int) -> None:
    sink = MqttSink(MqttConfig(url=url, prefix=prefix))
    await sink.start()
    for i in range(n_windows):
        await sink.emit(window("desk", i))
    await sink.emit(state("desk", "happy"))
    await sink.emit(state("hall", None))
    await sink.close()


async def test_live_table_shows_streams_and_history(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    from rich.console import Console

    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    model = LiveModel(mqtt_prefix)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.subscribe(f"{mqtt_prefix}/#", qos=1)
        pub = asyncio.create_task(_publish(mosquitto.url, mqtt_prefix, 6))
        # online + 6 windows + 2 states + offline
        await asyncio.wait_for(live(client, model, console, count=10), 20)
        await pub
    styled = console.export_text(clear=False, styles=True)
    text = console.export_text()
    assert "desk" in text and "hall" in text and "happy" in text
    assert "+0.50" in text and "70%" in text  # valence and confidence of desk's state
    desk = model.streams["desk"]
    assert len(desk.valence_hist) == 6 and len(desk.label_hist) == 6
    assert spark(desk.valence_hist) in text  # the history sparkline is drawn
    assert model.daemon_status == "offline"
    assert "38;2;251;192;45" in styled  # happy's colour (#fbc02d) in the emotion cell and label strip


def test_cli_live_in_a_pty(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    asyncio.run(_publish(mosquitto.url, mqtt_prefix, 0))  # retained states + status
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cli_cmd("listen", "--live", "--mqtt", mosquitto.url, "--prefix", mqtt_prefix, "--count", "3"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli_env({"TERM": "xterm-256color", "COLUMNS": "160"}),
        close_fds=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 0, out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode(errors="replace")
    assert "desk" in text and "hall" in text and "happy" in text
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "Traceback" not in text


def test_cli_listen_json_lines(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    asyncio.run(_publish(mosquitto.url, mqtt_prefix, 0))  # retained: status + two states
    r = subprocess.run(
        cli_cmd("listen", "--json", "--mqtt", mosquitto.url, "--prefix", mqtt_prefix, "--count", "3"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    import json

    msgs = [json.loads(x) for x in r.stdout.splitlines()]
    by_topic = {m["topic"]: m for m in msgs}
    assert by_topic[f"{mqtt_prefix}/status"]["payload"] == "offline"
    desk = by_topic[f"{mqtt_prefix}/desk/state"]
    assert desk["retain"] is True and desk["payload"]["current"]["label"] == "happy"
