"""Assembles a daemon from its configuration: engine, embedded broker or MQTT publisher, logs, stdout.

Kept apart from ``daemon.py`` (which runs whatever engine and sinks it is given) so tests and
``emotrack predict`` reuse the same daemon with their own sinks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamer.config import EmotrackConfig
from streamer.daemon import Daemon
from streamer.ecosystem import extra_sinks, file_sources
from streamer.resolved import source_specs
from streamer.sdnotify import SdNotifier
from streamer.sinks.base import Sink
from streamer.sources.spec import open_source

if TYPE_CHECKING:
    from streamer.sinks.mqtt import MqttSink

log = logging.getLogger(__name__)


async def load_configured_engine(cfg: EmotrackConfig) -> Any:
    """Load (and verify) the configured engine off the event loop; EngineError on any problem."""
    from engines import load_engine
    from streamer.config import engine_threads

    e = cfg.engine
    return await asyncio.to_thread(
        load_engine,
        e.path,
        backend=e.backend,
        intra_op_threads=engine_threads(e.intra_op_threads, cfg.inference.workers),
        inter_op_threads=e.inter_op_threads,
    )


def build_file_sinks(cfg: EmotrackConfig, environ: Mapping[str, str]) -> list[Sink]:
    """Conversation logs and stdout, as configured."""
    sinks: list[Sink] = []
    if cfg.logs.enabled:
        from streamer.sinks.logfile import ConversationLog, LogConfig

        lg = cfg.logs
        lc = LogConfig(
            directory=cfg.log_directory(environ),
            rotate_bytes=lg.rotate_bytes,
            rotate_seconds=lg.rotate_seconds,
            fsync=lg.fsync,
            queue_size=lg.queue_size,
        )
        sinks.append(ConversationLog(lc, sources=file_sources(cfg)))  # header names the audio
    if cfg.stdout != "off":
        from streamer.sinks.stdout import StdoutConfig, StdoutSink

        sinks.append(StdoutSink(StdoutConfig(json=cfg.stdout == "json")))
    return sinks


async def serve(
    cfg: EmotrackConfig,
    *,
    environ: Mapping[str, str] | None = None,
    notifier: SdNotifier | None = None,
    install_signals: bool = True,
) -> Daemon:
    """Run the daemon until a signal or until every source ended; returns it (for its stats)."""
    from streamer.sinks.broker import EmbeddedBroker
    from streamer.sinks.mqtt import MqttSink

    env = os.environ if environ is None else environ
    notifier = notifier or SdNotifier(env)
    notifier.status("loading engine")
    engine = await load_configured_engine(cfg)
    # Sources first: a missing file or device is the user's first error, before any port is bound.
    sources = [(s, open_source(s, chunk_ms=cfg.inference.chunk_ms)) for s in source_specs(cfg)]
    broker: EmbeddedBroker | None = None
    mqtt_cfg = cfg.mqtt
    if cfg.embedded_broker:
        broker = EmbeddedBroker(cfg.daemon.broker_host, cfg.daemon.broker_port)
        try:
            port = await broker.start()
        except BaseException:
            for _, src in sources:
                await src.aclose()
            raise
        mqtt_cfg = dataclasses.replace(mqtt_cfg, url=f"mqtt://{cfg.daemon.broker_host}:{port}")
        log.info("no broker configured: embedded broker at %s", mqtt_cfg.url)
    from streamer.statedir import open_state

    state = None
    try:
        state = open_state(cfg.daemon.state_directory, mqtt_cfg, env)
        mqtt = MqttSink(mqtt_cfg, spool=state.spool if state is not None else None)
        sinks: list[Sink] = [mqtt, *build_file_sinks(cfg, env)]
        sinks += extra_sinks(cfg, mqtt_cfg, mqtt)  # Home Assistant discovery, Prometheus metrics
        daemon = Daemon(
            cfg, engine, sinks, sources=sources, notifier=notifier, publish_stats=mqtt.publish_stats
        )
        daemon.seqstore = state.seqstore if state is not None else None
        if install_signals:
            daemon.install_signal_handlers()
        refused = asyncio.create_task(_stop_when_refused(mqtt, daemon))
        try:
            await daemon.run()
        finally:
            refused.cancel()
        if mqtt.refused is not None:  # the records are in the log and the spool; the CLI prints this
            raise mqtt.refused
        return daemon
    finally:
        if state is not None:
            state.close()
        if broker is not None:
            await broker.stop()
        notifier.close()


async def _stop_when_refused(mqtt: MqttSink, daemon: Daemon) -> None:
    """A broker that refused our credentials will refuse them again: drain and stop (the CLI exits 1)."""
    await mqtt.refused_event.wait()
    daemon.request_stop()
