"""The Mosquitto fixture and subscriber helper themselves: retained delivery and restart on the same port."""

from __future__ import annotations

import aiomqtt

from tests.fixtures_mqtt import MosquittoServer, Subscriber


async def test_subscriber_sees_messages_and_retain(
    mosquitto: MosquittoServer, subscriber: Subscriber
) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
        await c.publish(f"{subscriber.prefix}/a", b"1", qos=1)
        await c.publish(f"{subscriber.prefix}/r", b"kept", qos=1, retain=True)
    got = await subscriber.wait_count("r", 1)
    assert got[0].payload == b"kept"
    assert subscriber.on("a")[0].text == "1"
    async with Subscriber(mosquitto.host, mosquitto.port, subscriber.prefix) as late:
        msgs = await late.wait_count("r", 1)
        assert msgs[0].retain is True
        assert late.on("a") == []


async def test_restart_same_port_keeps_retained(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    port = mosquitto.port
    async with aiomqtt.Client(mosquitto.host, port) as c:
        await c.publish(f"{mqtt_prefix}/r", b"x", qos=1, retain=True)
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.port == port
    async with Subscriber(mosquitto.host, port, mqtt_prefix) as sub:
        msgs = await sub.wait_count("r", 1)
        assert msgs[0].payload == b"x"
