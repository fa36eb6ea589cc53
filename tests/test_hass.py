"""Home Assistant discovery through a real Mosquitto: retained configs, birth re-announce, templates.

The templates are rendered with Jinja2 (Home Assistant's template engine) against the state payload
the real MQTT sink published on the topic the config names.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from streamer.hass import HassConfigError, HassDiscovery
from streamer.records import EmotionValues, StateRecord
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.mqtt_config import MqttConfig
from tests.fixtures_mqtt import MosquittoServer, Received, Subscriber
from tests.sample_records import ENGINE

REQUIRED = {
    "name",
    "unique_id",
    "default_entity_id",
    "state_topic",
    "value_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
}


def state(stream: str, label: str | None = "happy") -> StateRecord:
    scores = None if label is None else {"neutral": 0.1, "happy": 0.7, "sad": 0.1, "angry": 0.1}
    vals = EmotionValues(
        label, scores, 0.5 if label else None, -0.25 if label else None, 0.125 if label else None
    )
    return StateRecord(stream, 7, "speaking", 3.5, 1.8e9, vals, ENGINE)


def object_id(p: dict[str, str]) -> str:
    """The object id: ``default_entity_id`` without its ``sensor.`` domain."""
    domain, _, oid = p["default_entity_id"].partition(".")
    assert domain == "sensor"
    return oid


def configs(msgs: list[Received], dp: str) -> list[Received]:
    return [m for m in msgs if m.topic.startswith(f"{dp}/sensor/") and m.topic.endswith("/config")]


async def test_discovery_configs_retained_and_reannounced(
    mosquitto: MosquittoServer, subscriber: Subscriber, mqtt_prefix: str
) -> None:
    jinja2 = pytest.importorskip("jinja2")
    dp = f"{mqtt_prefix}/ha"
    cfg = MqttConfig(url=mosquitto.url, prefix=f"{mqtt_prefix}/et", homeassistant=True, discovery_prefix=dp)
    hass = HassDiscovery(cfg, cfg.discovery_prefix)
    pub = MqttSink(cfg)
    await hass.start()
    await pub.start()
    try:
        for rec in (state("desk"), state("desk"), state("kitchen/ch 0", None)):
            await hass.emit(rec)
            await pub.emit(rec)
        msgs = await subscriber.wait_for(lambda ms: len(configs(ms, dp)) >= 10)
        got = configs(msgs, dp)
        assert len(got) == 10  # 5 sensors x 2 streams, each once
        by_topic = {m.topic: m.json() for m in got}
        desk = {t: p for t, p in by_topic.items() if "_desk_" in t}
        assert len(desk) == 5
        for topic, p in desk.items():
            assert set(p) >= REQUIRED, topic
            node = topic[len(dp) + 1 :].split("/")[1]
            assert topic == f"{dp}/sensor/{node}/{object_id(p)}/config"
            assert p["state_topic"] == f"{mqtt_prefix}/et/desk/state"
            assert p["availability_topic"] == f"{mqtt_prefix}/et/status"
            assert (p["payload_available"], p["payload_not_available"]) == ("online", "offline")
            dev = p["device"]
            assert dev["manufacturer"] == "emotrack" and dev["model"] == ENGINE.name and dev["sw_version"]
            assert isinstance(dev["identifiers"], list) and dev["name"] == "emotrack desk"
        assert len({p["unique_id"] for p in by_topic.values()}) == 10
        # templates: render against the state payload the real sink published on the named topic
        await subscriber.wait_for(lambda ms: any(m.topic == f"{mqtt_prefix}/et/desk/state" for m in ms))
        env = jinja2.Environment()
        rendered = {}
        for p in desk.values():
            payload = next(m for m in subscriber.messages if m.topic == p["state_topic"]).json()
            rendered[object_id(p).rsplit("_", 1)[1]] = env.from_string(p["value_template"]).render(
                value_json=payload
            )
        assert rendered == {
            "label": "happy",
            "confidence": "70.0",
            "valence": "0.5",
            "arousal": "-0.25",
            "dominance": "0.125",
        }
        kitchen = next(
            p for p in by_topic.values() if "kitchen" in object_id(p) and "confidence" in object_id(p)
        )
        assert kitchen["unit_of_measurement"] == "%"
        assert kitchen["state_topic"] == f"{mqtt_prefix}/et/kitchen_ch_0/state"
        assert all(c.isalnum() or c in "_-" for c in object_id(kitchen))
        # Home Assistant restarts: its birth message brings every config again
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as ha:
            await ha.publish(f"{dp}/status", b"online", qos=1)
        await subscriber.wait_for(lambda ms: len(configs(ms, dp)) >= 20)
        assert hass.births == 1
    finally:
        await pub.close()
        await hass.close()
    # retained: a client arriving later (Home Assistant starting) still gets every config
    async with Subscriber(mosquitto.host, mosquitto.port, dp) as late:
        msgs = await late.wait_for(lambda ms: len(configs(ms, dp)) >= 10)
        assert all(m.retain for m in configs(msgs, dp))
        assert len({m.topic for m in configs(msgs, dp)}) == 10


async def test_broker_down_at_start_then_up(mosquitto: MosquittoServer, mqtt_prefix: str) -> None:
    dp = f"{mqtt_prefix}/ha"
    mosquitto.stop()
    cfg = MqttConfig(url=mosquitto.url, prefix=mqtt_prefix, reconnect_min_s=0.1, reconnect_max_s=0.5)
    hass = HassDiscovery(cfg, dp)
    await hass.start()
    await hass.emit(state("desk"))
    await asyncio.sleep(0.3)
    assert hass.announced == 0
    mosquitto.start()
    try:
        async with Subscriber(mosquitto.host, mosquitto.port, dp) as sub:
            await sub.wait_for(lambda ms: len(configs(ms, dp)) >= 5, timeout=15)
    finally:
        await hass.close()


def test_bad_discovery_prefix() -> None:
    with pytest.raises(HassConfigError, match="discovery_prefix"):
        HassDiscovery(MqttConfig(), "home/#")
