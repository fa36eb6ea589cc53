"""Optional outputs beside MQTT and the logs: Home Assistant discovery and Prometheus metrics.

One call from the service (``extra_sinks``) so the daemon wiring stays unaware of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamer.sinks.base import Sink
from streamer.sinks.mqtt_config import MqttConfig


def extra_sinks(cfg: Any, mqtt_cfg: MqttConfig, mqtt: Any = None) -> list[Sink]:
    """The sinks ``[mqtt] homeassistant`` and ``[metrics] enabled`` ask for (``cfg``: EmotrackConfig).

    ``mqtt_cfg`` is the resolved publisher config (embedded broker URL filled in); ``mqtt`` the
    publisher sink, whose ``connected`` flag becomes the broker gauge.
    """
    sinks: list[Sink] = []
    if getattr(mqtt_cfg, "homeassistant", False):
        from streamer.hass import HassDiscovery

        sinks.append(HassDiscovery(mqtt_cfg, mqtt_cfg.discovery_prefix))
    metrics = getattr(cfg, "metrics", None)
    if metrics is not None and metrics.enabled:
        from streamer.metrics import MetricsSink

        connected = None if mqtt is None else (lambda: bool(getattr(mqtt, "connected", False)))
        sinks.append(MetricsSink(metrics, broker_connected=connected))
    return sinks


def file_sources(cfg: Any) -> dict[str, str]:
    """Stream id -> absolute audio path of each (unsplit) file source: logged in the session header
    so ``emotrack replay --engine`` can re-score a conversation from its audio."""
    from streamer.resolved import source_specs

    return {
        s.stream_id: str(Path(s.target).expanduser().resolve())
        for s in source_specs(cfg)
        if s.kind == "file" and not s.split
    }
