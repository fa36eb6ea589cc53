"""Broker faults against the MQTT sink with its on-disk spool: a real Mosquitto stopped, restarted
and replaced; a real persistent-session subscriber counts what arrives (see fault_report)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from streamer.sinks.mqtt import MqttSink
from streamer.sinks.mqtt_config import MqttConfig
from streamer.sinks.spool import Spool, SpoolConfig
from tests.fault_report import delivery_figures, first_arrivals, report
from tests.fixtures_mqtt import REPO_ROOT as REPO
from tests.fixtures_mqtt import MosquittoServer, Subscriber
from tests.sample_records import window


def arrivals(sub: Subscriber, stream: str) -> list[int]:
    return [m.json()["seq"] for m in sub.on(f"{stream}/window")]


def sink_for(url: str, prefix: str, spool_dir: Path, **kw: object) -> MqttSink:
    cfg = MqttConfig(url=url, prefix=prefix, reconnect_min_s=0.1, reconnect_max_s=0.5, **kw)  # type: ignore[arg-type]
    return MqttSink(cfg, spool=Spool(SpoolConfig(spool_dir, segment_bytes=16 * 1024)))


async def emit_range(sink: MqttSink, stream: str, seqs: range, every_s: float) -> None:
    for s in seqs:
        await sink.emit(window(stream, s))
        await asyncio.sleep(every_s)


async def test_broker_stopped_10s_mid_stream_every_seq_arrives_in_order(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str, tmp_path: Path
) -> None:
    sink = sink_for(mosquitto.url, mqtt_prefix, tmp_path / "spool", outbox_size=40, flush_timeout_s=30)
    await sink.start()
    try:
        await emit_range(sink, "s", range(0, 50), 0.01)
        await subscriber.wait_for(lambda _: len(arrivals(subscriber, "s")) >= 10, 20)
        mosquitto.stop()
        await emit_range(sink, "s", range(50, 300), 0.04)  # ~10 s of records while it is down
        assert sink.spool is not None and sink.spool.pending > 40  # past the outbox: on disk
        mosquitto.start()
        await emit_range(sink, "s", range(300, 350), 0.01)
    finally:
        await sink.close()
    await subscriber.wait_for(lambda _: set(range(350)) <= set(arrivals(subscriber, "s")), 30)
    got = arrivals(subscriber, "s")
    figures = report(
        "broker_stopped_10s",
        {**delivery_figures(range(350), got), "reconnects": sink.reconnects, **sink.spool.counters()},
    )
    assert figures["lost"] == 0 and figures["unexpected"] == 0
    assert first_arrivals(got) == list(range(350))  # spooled ones drained before newer ones
    assert sink.spool.pending == 0 and sink.dropped == 0
    assert not list((tmp_path / "spool").glob("seg-*.jsonl"))[1:]  # acked segments removed


async def test_broker_restart_keeps_queued_messages_for_a_persistent_subscriber(
    mosquitto: MosquittoServer, mqtt_prefix: str, tmp_path: Path
) -> None:
    """Mosquitto with ``persistence true``: messages queued for an offline persistent session
    survive a broker restart; the spool covers the time the broker itself was down."""
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as sub:
        identifier = sub.identifier  # leaves with a clean DISCONNECT; the session stays
    sink = sink_for(mosquitto.url, mqtt_prefix, tmp_path / "spool", flush_timeout_s=30)
    await sink.start()
    try:
        await emit_range(sink, "p", range(0, 100), 0.0)
        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while sink.published < 100 and loop.time() < end:
            await asyncio.sleep(0.05)
        assert sink.published >= 100  # acknowledged by the broker, queued for the offline session
        mosquitto.stop()  # SIGTERM: mosquitto writes mosquitto.db
        assert (mosquitto.workdir / "mosquitto.db").exists()
        await emit_range(sink, "p", range(100, 150), 0.01)  # broker down: these wait in the spool
        mosquitto.start()
        sub = Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix)
        sub.identifier = identifier
        async with sub:
            await emit_range(sink, "p", range(150, 200), 0.01)
            await sub.wait_for(lambda _: set(range(200)) <= set(arrivals(sub, "p")), 30)
            got = arrivals(sub, "p")
    finally:
        await sink.close()
    figures = report("broker_restart_persistence", delivery_figures(range(200), got))
    assert figures["lost"] == 0 and figures["unexpected"] == 0


async def test_spool_survives_a_sink_restart_and_drains_first(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str, tmp_path: Path
) -> None:
    """Broker down for a whole daemon run: its records wait on disk and go out first next time."""
    mosquitto.stop()
    spool_dir = tmp_path / "spool"
    first = sink_for(mosquitto.url, mqtt_prefix, spool_dir, outbox_size=10, flush_timeout_s=0.5)
    await first.start()
    await emit_range(first, "r", range(0, 120), 0.0)
    await first.close()
    assert first.dropped == 0  # nothing memory-only was lost: the records stay spooled
    mosquitto.start()
    second = sink_for(mosquitto.url, mqtt_prefix, spool_dir, outbox_size=10, flush_timeout_s=20)
    assert second.spool is not None and second.spool.pending == 120
    await second.start()
    try:
        await emit_range(second, "r", range(120, 150), 0.0)
    finally:
        await second.close()
    await subscriber.wait_for(lambda _: set(range(150)) <= set(arrivals(subscriber, "r")), 30)
    got = arrivals(subscriber, "r")
    figures = report("sink_restart_spool", delivery_figures(range(150), got))
    assert figures["lost"] == 0
    assert first_arrivals(got) == list(range(150))
    assert Spool(SpoolConfig(spool_dir)).pending == 0


DISK_FULL = """
import asyncio, json, resource, signal, sys
from pathlib import Path
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.mqtt_config import MqttConfig
from streamer.sinks.spool import Spool, SpoolConfig
from tests.sample_records import window

async def main():
    url, prefix, d = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    spool = Spool(SpoolConfig(d, segment_bytes=1 << 20))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
    sink = MqttSink(MqttConfig(url=url, prefix=prefix, flush_timeout_s=20), spool=spool)
    await sink.start()
    for s in range(200):
        await sink.emit(window("df", s))
    await sink.close()
    print(json.dumps(sink.counters()))

asyncio.run(main())
"""


async def test_spool_disk_full_falls_back_to_memory(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str, tmp_path: Path
) -> None:
    """Spool writes fail (file size limit: EFBIG, as on a full disk): records still go out."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DISK_FULL,
        mosquitto.url,
        mqtt_prefix,
        str(tmp_path / "spool"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    counters = json.loads(out.decode().strip().splitlines()[-1])
    assert counters["spool_errors"] > 0 and err.decode().count("queuing in memory only") <= 1
    await subscriber.wait_for(lambda _: set(range(200)) <= set(arrivals(subscriber, "df")), 30)
    figures = report(
        "spool_disk_full",
        {
            **delivery_figures(range(200), arrivals(subscriber, "df")),
            "spool_errors": counters["spool_errors"],
        },
    )
    assert figures["lost"] == 0
