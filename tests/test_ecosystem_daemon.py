"""The real daemon (``serve``) with Home Assistant discovery and metrics switched on by config.

espeak speech paced in real time through the tiny engine; Prometheus is scraped while it runs, the
discovery configs are read from the real Mosquitto, and the conversation log is then reported and
plotted by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
from pathlib import Path

from streamer.config import load_config
from streamer.service import serve
from tests.daemon_helpers import cli_cmd, cli_env
from tests.fixtures_mqtt import MosquittoServer, Subscriber, free_port
from tests.test_metrics_http import parse


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


async def test_daemon_announces_to_home_assistant_and_serves_metrics(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    port = free_port()
    dp = f"{mqtt_prefix}/ha"
    cfg = load_config(
        None,
        environ={},
        flags={
            "engine": {"path": str(tiny_engine_dir), "intra_op_threads": 1},
            "sources": [f"file:{speech_wav}?id=desk&realtime=1"],
            "mqtt": {
                "url": mosquitto.url,
                "prefix": f"{mqtt_prefix}/et",
                "homeassistant": True,
                "discovery_prefix": dp,
            },
            "metrics": {"enabled": True, "port": port},
            "logs": {"directory": str(tmp_path / "logs")},
            "daemon": {"watchdog": False, "stats_interval_s": 1.0},
        },
    )
    task = asyncio.create_task(serve(cfg, environ={}, install_signals=False))
    scraped: dict[str, float] = {}
    try:
        for _ in range(400):  # until a scrape shows a scored window and the stream's state
            await asyncio.sleep(0.1)
            if task.done():
                break
            with contextlib.suppress(OSError):
                scraped = parse(await asyncio.to_thread(_scrape, port))
                if scraped.get("emotrack_windows_scored_total", 0) > 0 and any(
                    k.startswith('emotrack_stream_label{stream="desk"') for k in scraped
                ):
                    break
        await asyncio.wait_for(task, 120)
    finally:
        if not task.done():
            task.cancel()
    assert scraped["emotrack_windows_scored_total"] > 0
    assert scraped["emotrack_broker_connected"] == 1
    assert scraped['emotrack_window_latency_seconds_bucket{le="+Inf"}'] > 0
    assert -1.0 <= scraped['emotrack_stream_valence{stream="desk"}'] <= 1.0
    msgs = await subscriber.wait_for(lambda ms: sum(m.topic.startswith(f"{dp}/sensor/") for m in ms) >= 5)
    confs = [m.json() for m in msgs if m.topic.startswith(f"{dp}/sensor/")]
    assert {c["state_topic"] for c in confs} == {f"{mqtt_prefix}/et/desk/state"}
    assert {c["device"]["model"] for c in confs} == {"tiny-test"}  # the engine name
    # the log the daemon wrote: report and plot it through the CLI
    logs = sorted((tmp_path / "logs").rglob("*.jsonl"))
    assert logs
    assert json.loads(logs[0].read_text().splitlines()[0])["source"] == str(speech_wav.resolve())
    r = subprocess.run(
        cli_cmd("report", "--json", *map(str, logs)),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.splitlines()[0])
    assert rep["stream"] == "desk" and rep["windows"] >= scraped["emotrack_windows_scored_total"]
