"""Home Assistant MQTT discovery: every stream appears as a device with five sensors.

For each stream the first time one of its records passes by, retained discovery configs are
published to ``<discovery_prefix>/sensor/<prefix>/emotrack_<stream>_<sensor>/config`` (label, confidence %,
valence, arousal, dominance), all reading the stream's retained state topic
``<prefix>/<stream>/state`` through ``value_template`` JSON paths, and available while the daemon's
``<prefix>/status`` says ``online``. When Home Assistant restarts it publishes ``online`` on
``<discovery_prefix>/status`` (its birth message): every config is published again.

The entity id is suggested with ``default_entity_id`` (``sensor.emotrack_<stream>_<sensor>``) and
the same object id ends the config topic: Home Assistant deprecated the ``object_id`` payload option
in 2025.10 and dropped it in 2026.4, so it is not sent.

Configs are not removed when a file or microphone stream ends: the entity keeps its last (retained,
status "ended") state and the device comes back when the stream does. A socket client's stream
(ephemeral: every call has a new id) is removed when it ends: empty retained payloads on its config
topics, so Home Assistant deletes its entities and the broker forgets them. Remove any other device
the same way (or delete it in Home Assistant).

Uses its own MQTT connection (client id ``<client_id>-hass``) so the record publisher's ordering and
outbox are untouched; a broker that is down only delays the announcements (reconnect with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiomqtt

from streamer import __version__
from streamer.records import Record
from streamer.sinks.base import SinkError, StreamEnd, safe_name
from streamer.sinks.mqtt_config import MqttConfig

log = logging.getLogger("emotrack.hass")

BIRTH = b"online"
_SLUG = re.compile(r"[^a-zA-Z0-9_-]")


class HassConfigError(SinkError, ValueError):
    """A bad Home Assistant discovery setting."""


@dataclass(frozen=True, slots=True)
class Sensor:
    key: str
    name: str
    template: str
    unit: str | None = None
    icon: str = "mdi:emoticon-outline"
    numeric: bool = True


SENSORS: tuple[Sensor, ...] = (
    Sensor("label", "Emotion", "{{ value_json.current.label }}", icon="mdi:emoticon-outline", numeric=False),
    Sensor(
        "confidence",
        "Confidence",
        "{% set c = value_json.current %}"
        "{{ (c.scores[c.label] * 100) | round(1) if c.label and c.scores and c.label in c.scores "
        "else None }}",
        unit="%",
        icon="mdi:percent",
    ),
    Sensor("valence", "Valence", "{{ value_json.current.valence }}", icon="mdi:emoticon-happy-outline"),
    Sensor("arousal", "Arousal", "{{ value_json.current.arousal }}", icon="mdi:lightning-bolt-outline"),
    Sensor("dominance", "Dominance", "{{ value_json.current.dominance }}", icon="mdi:arm-flex-outline"),
)


def slug(text: str) -> str:
    """An id Home Assistant accepts in topics and unique ids ([a-zA-Z0-9_-])."""
    return _SLUG.sub("_", text).strip("_") or "_"


def discovery_configs(
    mqtt: MqttConfig, discovery_prefix: str, stream: str, engine_name: str
) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, payload) for each sensor of ``stream`` (the documented sensor schema)."""
    base = mqtt.base
    node = slug(base if "emotrack" in base.lower() else f"emotrack_{base}")  # one namespace per daemon
    device_id = slug(f"{node}_{stream}")
    state_topic = f"{base}/{safe_name(stream)}/state"  # what MqttSink publishes StateRecords to
    device = {
        "identifiers": [device_id],
        "name": f"emotrack {stream}",
        "manufacturer": "emotrack",
        "model": engine_name,
        "sw_version": __version__,
    }
    out = []
    for s in SENSORS:
        object_id = slug(f"emotrack_{stream}_{s.key}")
        payload: dict[str, Any] = {
            "name": s.name,
            "unique_id": f"{device_id}_{s.key}",
            "default_entity_id": f"sensor.{object_id}",
            "state_topic": state_topic,
            "value_template": s.template,
            "availability_topic": f"{base}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": s.icon,
            "device": device,
            "origin": {"name": "emotrack", "sw_version": __version__},
        }
        if s.numeric:
            payload["state_class"] = "measurement"
            if s.key != "confidence":
                payload["suggested_display_precision"] = 2
        if s.unit is not None:
            payload["unit_of_measurement"] = s.unit
        out.append((f"{discovery_prefix}/sensor/{node}/{object_id}/config", payload))
    return out


class HassDiscovery:
    """Sink that announces streams to Home Assistant; see the module docstring."""

    def __init__(self, mqtt: MqttConfig, discovery_prefix: str = "homeassistant", *, max_streams: int = 1000):
        dp = discovery_prefix.strip("/")
        if not dp or any(c in dp for c in "+#\0") or dp.startswith("$"):
            raise HassConfigError(
                f"mqtt.discovery_prefix {discovery_prefix!r} must be non-empty, without + # or a leading $"
            )
        self.mqtt = mqtt
        self.discovery_prefix = dp
        self.max_streams = max_streams
        self._streams: OrderedDict[str, str] = OrderedDict()  # stream -> engine name, oldest first
        self._pending: set[str] = set()
        self._removals: dict[str, str] = {}  # ended ephemeral streams whose configs are to be removed
        self._announce_all = False
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.announced = 0  # config messages published
        self.removed = 0  # ephemeral streams whose configs were removed
        self.births = 0  # Home Assistant birth messages seen
        self.streams_forgotten = 0  # streams beyond max_streams (counted drop)

    @property
    def status_topic(self) -> str:
        return f"{self.discovery_prefix}/status"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="emotrack-hass")

    async def emit(self, record: Record) -> None:
        if record.stream in self._streams:
            return
        self._streams[record.stream] = record.engine.name
        while len(self._streams) > self.max_streams:
            gone, _ = self._streams.popitem(last=False)
            self._pending.discard(gone)
            self.streams_forgotten += 1
        self._pending.add(record.stream)
        self._wakeup.set()

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        """Configs stay, except an ephemeral stream's, which are removed (see the module docstring)."""
        if end is None or not end.ephemeral:
            return
        engine = self._streams.pop(stream, None)
        self._pending.discard(stream)
        if engine is not None:
            self._removals[stream] = engine
            self._wakeup.set()

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, self.mqtt.flush_timeout_s)
            self._task = None
        self.connected = False

    def counters(self) -> dict[str, Any]:
        return {
            "streams": len(self._streams),
            "announced": self.announced,
            "removed": self.removed,
            "births": self.births,
            "forgotten": self.streams_forgotten,
            "connected": self.connected,
        }

    # -- connection -----------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.mqtt.reconnect_min_s
        while not self._closing:
            client = self.mqtt.make_client(identifier=f"{self.mqtt.resolved_client_id()}-hass")
            try:
                async with client:
                    self.connected = True
                    delay = self.mqtt.reconnect_min_s
                    await client.subscribe(self.status_topic, qos=1)
                    self._announce_all = True  # a (re)connection may follow a broker without persistence
                    await self._session(client)
                self.connected = False
                return
            except (aiomqtt.MqttError, OSError) as exc:
                self.connected = False
                if self._closing:
                    return
                log.warning("Home Assistant discovery: broker %s: %s; retrying", self.mqtt.endpoint(), exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_closing(), delay)
                delay = min(delay * 2, self.mqtt.reconnect_max_s)

    async def _wait_closing(self) -> None:
        while not self._closing:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _session(self, client: aiomqtt.Client) -> None:
        reader = asyncio.create_task(self._read(client))
        try:
            while True:
                await self._announce(client)
                if self._closing:
                    return
                self._wakeup.clear()
                waiter = asyncio.create_task(self._wakeup.wait())
                done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader in done:
                    reader.result()  # raises the connection error
                    raise aiomqtt.MqttError("connection closed")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            if m.topic.matches(self.status_topic) and payload.strip() == BIRTH:
                self.births += 1
                log.info("Home Assistant came online: announcing %d stream(s) again", len(self._streams))
                self._announce_all = True
                self._wakeup.set()

    async def _announce(self, client: aiomqtt.Client) -> None:
        if self._announce_all:
            self._announce_all = False
            todo = list(self._streams)
            self._pending.clear()
        else:
            todo = [s for s in self._streams if s in self._pending]
            self._pending.difference_update(todo)
        for stream in todo:
            engine = self._streams.get(stream, "?")
            for topic, payload in discovery_configs(self.mqtt, self.discovery_prefix, stream, engine):
                data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
                await client.publish(topic, data, qos=1, retain=True)
                self.announced += 1
        while self._removals:
            stream, engine = next(iter(self._removals.items()))
            for topic, _ in discovery_configs(self.mqtt, self.discovery_prefix, stream, engine):
                await client.publish(topic, b"", qos=1, retain=True)
            del self._removals[stream]  # only once published: a broken connection retries them
            self.removed += 1
