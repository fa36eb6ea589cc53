"""MqttSink against a real Mosquitto and a real subscriber: schema, order, retain, will, outages."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest

from streamer.sinks.mqtt import (
    BrokerUnreachableError,
    MqttConfig,
    MqttConfigError,
    MqttSink,
    check_broker,
)
from tests import sample_records as rec
from tests.fixtures_mqtt import REPO_ROOT, MosquittoServer, Subscriber, free_port


def make_cfg(server: MosquittoServer, prefix: str, **kw: object) -> MqttConfig:
    opts: dict[str, object] = {
        "url": server.url,
        "prefix": prefix,
        "client_id": f"emotrack-test-{uuid.uuid4().hex[:8]}",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
        "flush_timeout_s": 5.0,
    }
    opts.update(kw)
    return MqttConfig(**opts)  # type: ignore[arg-type]


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def seqs(sub: Subscriber, stream: str = "s1") -> list[int]:
    """Window seqs in arrival order, duplicates dropped as a subscriber does (at-least-once).

    Mosquitto 2.0 may redeliver messages a persistent subscriber already acknowledged when it
    restarts from its database; that is the broker's QoS 1 contract, not the sink's.
    """
    seen: list[int] = []
    for m in sub.on(f"{stream}/window"):
        seq = m.json()["seq"]
        if seq not in seen:
            seen.append(seq)
    return seen


async def test_records_arrive_in_order_with_schema(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix))
    await sink.start()
    windows = [rec.window("s1", i) for i in range(20)]
    for w in windows:
        await sink.emit(w)
    utt = rec.utterance("s1", 20)
    await sink.emit(utt)
    await sink.emit(rec.state("s1", 20))
    await sink.publish_stats({"windows_scored": 20, "streams": 1})
    await subscriber.wait_count("s1/state", 1)
    await sink.close()

    got = subscriber.on("s1/window")
    assert [m.json() for m in got] == [w.to_dict() for w in windows]
    assert all(not m.retain and m.qos == 1 for m in got)
    assert subscriber.on("s1/utterance")[0].json() == utt.to_dict()
    assert subscriber.on("stats")[0].json() == {"windows_scored": 20, "streams": 1}
    # one payload per message, compact JSON
    assert b" " not in got[0].payload
    status = [m.text for m in await subscriber.wait_count("status", 2)]
    assert status == ["online", "offline"]
    assert sink.published == 20 + 1 + 1 + 1  # windows, utterance, state, stats
    assert sink.dropped == 0 and not sink.connected


async def test_state_and_status_are_retained(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix))
    await sink.start()
    await sink.emit(rec.window("s1", 0))
    await sink.emit(rec.state("s1", 0, "speaking"))
    await sink.emit(rec.state("s1", 1, "silent"))
    await until(lambda: sink.published >= 3)
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as late:
        state = await late.wait_count("s1/state", 1)
        online = await late.wait_count("status", 1)
    assert state[-1].retain and state[-1].json()["status"] == "silent"
    assert online[-1].retain and online[-1].text == "online"
    assert late.on("s1/window") == []  # windows are not retained
    await sink.close()
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as later:
        status = await later.wait_count("status", 1)
    assert status[-1].retain and status[-1].text == "offline"


async def test_stream_ids_become_topic_safe(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix))
    await sink.start()
    await sink.emit(rec.window("mic/left #1+x", 0))
    msgs = await subscriber.wait_count("mic_left__1_x/window", 1)
    await sink.close()
    assert msgs[0].json()["stream"] == "mic/left #1+x"


WILL_CHILD = """
import asyncio, sys
from streamer.sinks.mqtt import MqttConfig, MqttSink
from tests.sample_records import window

async def main() -> None:
    sink = MqttSink(MqttConfig(url=sys.argv[1], prefix=sys.argv[2], client_id=sys.argv[3]))
    await sink.start()
    await sink.emit(window("child", 0))
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_last_will_when_process_is_killed(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CHILD, mosquitto.url, mqtt_prefix, f"will-{uuid.uuid4().hex[:8]}"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        await subscriber.wait_count("child/window", 1, timeout=30)
        assert [m.text for m in subscriber.on("status")] == ["online"]
        child.send_signal(signal.SIGKILL)
        child.wait()
        status = await subscriber.wait_count("status", 2)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert status[-1].text == "offline"
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as late:
        retained = await late.wait_count("status", 1)
    assert retained[0].retain and retained[0].text == "offline"


async def test_broker_down_at_start_then_started(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    mosquitto.stop()  # the subscriber's persistent session survives in mosquitto's db
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix))
    await sink.start()
    for i in range(3):
        await sink.emit(rec.window("s1", i))  # never blocks while the broker is down
    await until(lambda: sink.connect_failures >= 2)
    assert not sink.connected and sink.published == 0
    mosquitto.start()
    await subscriber.wait_for(lambda _: len(seqs(subscriber)) >= 3, timeout=20)
    await sink.close()
    assert seqs(subscriber) == [0, 1, 2]
    assert sink.reconnects == 0  # the first successful connection is not a reconnect
    assert sink.dropped == 0


async def test_broker_outage_mid_stream(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix, outbox_size=20))
    await sink.start()
    for i in range(5):
        await sink.emit(rec.window("s1", i))
    await subscriber.wait_for(lambda _: len(seqs(subscriber)) >= 5)
    mosquitto.stop()
    await until(lambda: not sink.connected)
    for i in range(5, 30):  # 25 records into an outbox of 20: the 5 oldest are dropped
        await sink.emit(rec.window("s1", i))
    assert sink.dropped == 5
    mosquitto.start()
    await subscriber.wait_for(lambda _: 29 in seqs(subscriber), timeout=20)
    await until(lambda: sink.reconnects >= 1)
    await sink.close()
    assert seqs(subscriber) == list(range(5)) + list(range(10, 30))
    assert sink.reconnects == 1
    assert sink.published == 5 + 20  # queued messages; status messages are not counted


async def test_broker_stops_during_a_burst_nothing_lost(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    """Publishes in flight when the link drops are sent again after reconnecting."""
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix, outbox_size=1000))
    await sink.start()
    await until(lambda: sink.connected)
    for i in range(1000):
        await sink.emit(rec.window("s1", i))
    await until(lambda: sink.published >= 20)
    mosquitto.stop()
    assert sink.published < 1000  # the link dropped mid-burst
    await until(lambda: not sink.connected)
    mosquitto.start()
    last = b'"seq":999,'
    await subscriber.wait_for(lambda ms: any(last in m.payload for m in ms[-50:]), timeout=30)
    await sink.close()
    assert seqs(subscriber) == list(range(1000))
    assert sink.dropped == 0 and sink.published == 1000


async def test_outbox_overflow_drops_oldest_and_counts(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    mosquitto.stop()
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix, outbox_size=5))
    await sink.start()
    for i in range(12):
        await sink.emit(rec.window("s1", i))
    assert sink.dropped == 7
    assert sink.counters()["queued"] == 5
    mosquitto.start()
    await subscriber.wait_for(lambda _: 11 in seqs(subscriber), timeout=20)
    await sink.close()
    assert seqs(subscriber) == [7, 8, 9, 10, 11]


async def test_close_with_broker_down_is_bounded_and_counts_losses(mqtt_prefix: str) -> None:
    port = free_port()
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{port}", prefix=mqtt_prefix, flush_timeout_s=0.5)
    sink = MqttSink(cfg)
    await sink.start()
    await sink.emit(rec.window("s1", 0))
    await sink.emit(rec.window("s1", 1))
    await sink.close()
    assert sink.dropped == 2 and sink.published == 0 and not sink.connected


async def test_close_with_a_hung_broker_is_bounded_and_says_offline(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    sink = MqttSink(make_cfg(mosquitto, mqtt_prefix, flush_timeout_s=0.5, timeout_s=2.0, keepalive=60))
    await sink.start()
    await sink.emit(rec.window("s1", 0))
    await subscriber.wait_count("s1/window", 1)
    mosquitto.pause()
    try:
        for i in range(1, 6):
            await sink.emit(rec.window("s1", i))
        await sink.close()  # returns although nothing is acknowledged any more
    finally:
        mosquitto.resume()
    assert sink.published == 1 and sink.dropped == 5
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as late:
        status = await late.wait_count("status", 1)
    assert status[-1].retain and status[-1].text == "offline"


async def test_check_broker(mosquitto: MosquittoServer) -> None:
    await check_broker(mosquitto.url, timeout=5)
    port = free_port()
    with pytest.raises(BrokerUnreachableError) as ei:
        await check_broker(f"mqtt://127.0.0.1:{port}", timeout=5)
    msg = str(ei.value)
    assert msg.startswith(f"cannot reach MQTT broker at 127.0.0.1:{port}: ")
    assert "refused" in msg.lower() and "\n" not in msg


def test_config_url_parsing_and_redaction() -> None:
    cfg = MqttConfig(url="mqtts://alice:s%40cret@broker.example:9999")
    ep = cfg.endpoint()
    assert (ep.host, ep.port, ep.tls, ep.username, ep.password) == (
        "broker.example",
        9999,
        True,
        "alice",
        "s@cret",
    )
    assert "s%40cret" not in repr(cfg) and "s@cret" not in repr(cfg) and "***" in repr(cfg)
    assert MqttConfig(url="mqtts://h").endpoint().port == 8883
    assert MqttConfig(url="mqtt://h").endpoint().port == 1883
    assert MqttConfig(host="10.0.0.1", port=1999).endpoint()[:3] == ("10.0.0.1", 1999, False)
    hidden = MqttConfig(username="bob", password="hunter2")
    assert "hunter2" not in repr(hidden) and "hunter2" not in str(hidden)
    assert MqttConfig().resolved_client_id().startswith("emotrack-")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"url": "http://h:1"}, "mqtt.url"),
        ({"url": "mqtt://h:99999"}, "mqtt.url"),
        ({"url": "mqtt://:1883"}, "no host"),
        ({"qos": 3}, "mqtt.qos"),
        ({"prefix": "a/#"}, "mqtt.prefix"),
        ({"outbox_size": 0}, "mqtt.outbox_size"),
        ({"ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file not found: /nonexistent/ca.pem"),
        ({"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}, "reconnect_min_s"),
    ],
)
def test_config_errors_are_one_line(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(MqttConfigError) as ei:
        MqttConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(ei.value) and "\n" not in str(ei.value)


async def test_stats_topic_and_queue_counter() -> None:
    sink = MqttSink(MqttConfig(prefix="p/"))
    await sink.publish_stats({"a": 1})
    assert sink.stats_topic == "p/stats" and sink.status_topic == "p/status"
    assert sink.counters()["queued"] == 1 and not sink.connected
