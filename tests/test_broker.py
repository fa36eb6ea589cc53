"""The embedded amqtt broker with a real MqttSink and a real aiomqtt subscriber: retain and will."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aiomqtt
import pytest

from streamer.sinks.broker import EmbeddedBroker, EmbeddedBrokerError
from streamer.sinks.mqtt import MqttConfig, MqttSink, check_broker
from tests import sample_records as rec
from tests.fixtures_mqtt import REPO_ROOT, Subscriber
from tests.test_sink_mqtt import WILL_CHILD, until


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from the kernel's tables (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port or fields[3] != "0A":  # 0A = LISTEN
                continue
            raw = bytes.fromhex(addr_hex)
            if len(raw) == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    if not found:
        pytest.skip("cannot read /proc/net/tcp to check the bound address")
    return found


def prefix() -> str:
    return f"emotrack-test/{uuid.uuid4().hex[:12]}"


async def test_start_on_free_port_binds_loopback_only() -> None:
    async with EmbeddedBroker(port=0) as broker:
        assert broker.port is not None and broker.port > 0
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        await check_broker(broker.url, timeout=5)
        assert listening_addresses(broker.port) == {"127.0.0.1"}
    assert broker.port is None


async def test_sink_records_retained_state_and_status() -> None:
    p = prefix()
    async with EmbeddedBroker(port=0) as broker:
        assert broker.port is not None
        async with Subscriber("127.0.0.1", broker.port, p) as sub:
            sink = MqttSink(MqttConfig(url=broker.url, prefix=p, client_id=f"t-{uuid.uuid4().hex[:8]}"))
            await sink.start()
            for i in range(5):
                await sink.emit(rec.window("s1", i))
            await sink.emit(rec.state("s1", 5, "silent"))
            await sub.wait_count("s1/state", 1)
            assert [m.json()["seq"] for m in sub.on("s1/window")] == list(range(5))
            assert sub.on("s1/window")[0].json() == rec.window("s1", 0).to_dict()
        async with Subscriber("127.0.0.1", broker.port, p) as late:
            state = await late.wait_count("s1/state", 1)
            status = await late.wait_count("status", 1)
            assert state[0].retain and state[0].json()["status"] == "silent"
            assert status[0].retain and status[0].text == "online"
        await sink.close()
        async with Subscriber("127.0.0.1", broker.port, p) as later:
            status = await later.wait_count("status", 1)
            assert status[-1].text == "offline" and status[-1].retain


async def test_will_published_when_client_dies() -> None:
    p = prefix()
    async with EmbeddedBroker(port=0) as broker, Subscriber("127.0.0.1", broker.port or 0, p) as sub:
        child = subprocess.Popen(
            [sys.executable, "-c", WILL_CHILD, broker.url, p, f"will-{uuid.uuid4().hex[:8]}"],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        try:
            await sub.wait_count("child/window", 1, timeout=30)
            child.send_signal(signal.SIGKILL)
            await asyncio.to_thread(child.wait)
            status = await sub.wait_count("status", 2)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert [m.text for m in status] == ["online", "offline"]
        async with Subscriber("127.0.0.1", broker.port or 0, p) as late:
            retained = await late.wait_count("status", 1)
            assert retained[0].retain and retained[0].text == "offline"


async def test_plain_client_retained_roundtrip() -> None:
    p = prefix()
    async with EmbeddedBroker(port=0) as broker:
        assert broker.port is not None
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            await c.publish(f"{p}/x", b"kept", qos=1, retain=True)
        async with Subscriber("127.0.0.1", broker.port, p) as sub:
            got = await sub.wait_count("x", 1)
            assert got[0].payload == b"kept" and got[0].retain


async def test_port_in_use_is_a_one_line_error(caplog: pytest.LogCaptureFixture) -> None:
    async with EmbeddedBroker(port=0) as first:
        assert first.port is not None
        second = EmbeddedBroker(port=first.port)
        with pytest.raises(EmbeddedBrokerError) as ei:
            await second.start()
        msg = str(ei.value)
        assert msg == f"cannot start embedded MQTT broker on 127.0.0.1:{first.port}: Address already in use"
        assert not [r for r in caplog.records if r.exc_info]  # no traceback in the logs either


def test_refuses_non_loopback_address() -> None:
    with pytest.raises(EmbeddedBrokerError, match="loopback"):
        EmbeddedBroker(host="0.0.0.0")


async def test_sink_reconnects_when_embedded_broker_restarts() -> None:
    p = prefix()
    broker = EmbeddedBroker(port=0)
    port = await broker.start()
    sink = MqttSink(
        MqttConfig(url=broker.url, prefix=p, client_id=f"t-{uuid.uuid4().hex[:8]}", reconnect_min_s=0.05)
    )
    await sink.start()
    await until(lambda: sink.connected)
    await broker.stop()
    await until(lambda: not sink.connected)
    await sink.emit(rec.window("s1", 0))
    broker = EmbeddedBroker(port=port)
    await broker.start()
    try:
        async with Subscriber("127.0.0.1", port, p) as sub:
            await sink.emit(rec.window("s1", 1))
            await sub.wait_count("s1/window", 1, timeout=20)
            await until(lambda: sink.published >= 2)
        assert sink.reconnects == 1
    finally:
        await sink.close()
        await broker.stop()
