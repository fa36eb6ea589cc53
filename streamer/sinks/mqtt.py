"""MQTT publisher sink: records to ``<prefix>/<stream>/{window,utterance,state}``.

A broker that is down at start or goes away mid-stream never stops the daemon: ``emit`` only
appends to a bounded outbox (drop-oldest, counted) and one background task connects with
exponential backoff and drains it in order, so order is preserved per stream. A message leaves the
outbox only once the broker acknowledged it (QoS >= 1), so an outage loses nothing that fits in the
outbox; a message in flight when the link broke is sent again (at-least-once: subscribers dedupe
by (stream, seq)).

With a ``Spool`` (``streamer.sinks.spool``) window and utterance messages are written to disk
before they are queued: past the in-memory outbox they wait only on disk, they survive a crash
or restart, and the unacknowledged tail is sent first, in order, when the sink starts again.
State and stats messages stay in memory (latest state wins; the outbox drops the oldest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomqtt

from streamer.records import Record, StateRecord, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd, record_json, safe_name
from streamer.sinks.mqtt_config import (
    BrokerRefusedError,
    BrokerUnreachableError,
    Endpoint,
    MqttConfig,
    MqttConfigError,
    describe_error,
    refusal,
)
from streamer.sinks.spool import Spool, SpoolError

__all__ = [
    "BrokerRefusedError",
    "BrokerUnreachableError",
    "MqttConfig",
    "MqttConfigError",
    "MqttSink",
    "check_broker",
    "describe_error",
]

log = logging.getLogger("emotrack.mqtt")

T = TypeVar("T")

_STABLE_S = 5.0  # a connection that lasted this long resets the reconnect backoff


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    index: int = -1  # position in the spool; -1 for messages kept only in memory


class MqttSink:
    """Publishes records to an MQTT broker through a bounded outbox; see the module docstring."""

    def __init__(
        self, cfg: MqttConfig, *, logger: logging.Logger | None = None, spool: Spool | None = None
    ) -> None:
        self.cfg = cfg
        self.spool = spool
        self._backlog = spool is not None and spool.pending > 0  # spooled messages not in memory
        self._loaded = spool.acked if spool is not None else -1  # newest spool index in memory
        self.endpoint: Endpoint = cfg.endpoint()
        self._log = logger or log
        self._outbox: deque[Outgoing] = deque()
        self._unacked: deque[Outgoing] = deque()  # sent, not yet acknowledged
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ever_connected = False
        self._failing = 0  # failed attempts since the last connection (only the first is logged)
        self.refused: BrokerRefusedError | None = None  # the broker refused us for good (set once)
        self.refused_event = asyncio.Event()  # set with ``refused``: the daemon stops on it
        self.published = 0
        self.dropped = 0
        self.reconnects = 0
        self.connect_failures = 0
        self.connected = False
        self.spool_errors = 0

    # -- topics ---------------------------------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return f"{self.cfg.base}/status"

    @property
    def stats_topic(self) -> str:
        return f"{self.cfg.base}/stats"

    def topic_for(self, record: Record) -> str:
        kind = {WindowRecord: "window", UtteranceRecord: "utterance", StateRecord: "state"}[type(record)]
        return f"{self.cfg.base}/{safe_name(record.stream)}/{kind}"

    # -- Sink protocol --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background connection; returns at once even when the broker is down."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="emotrack-mqtt")

    async def emit(self, record: Record) -> None:
        retain = isinstance(record, StateRecord) and self.cfg.retain_state
        topic, payload = self.topic_for(record), record_json(record).encode()
        if self.spool is None or isinstance(record, StateRecord):
            self._enqueue(Outgoing(topic, payload, self.cfg.qos, retain))
            return
        try:
            index = self.spool.append(topic, payload, self.cfg.qos, retain)
        except SpoolError as exc:  # disk full or gone: keep going in memory, say so once
            if not self.spool_errors:
                self._log.error("MQTT: %s; queuing in memory only", exc)
            self.spool_errors += 1
            self._enqueue(Outgoing(topic, payload, self.cfg.qos, retain))
            return
        if not self._backlog and len(self._outbox) < self.cfg.outbox_size:
            self._outbox.append(Outgoing(topic, payload, self.cfg.qos, retain, index))
            self._loaded = index
        else:
            self._backlog = True  # it waits on disk; _refill loads it in order
        self._wakeup.set()

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        """The final ``state`` record (status "ended") stays retained, except for a socket client's
        stream: an empty retained message (after that record, in order) removes it from the broker, so
        a server taking call after call does not pile up retained topics."""
        if end is not None and end.ephemeral and self.cfg.retain_state:
            self._enqueue(Outgoing(f"{self.cfg.base}/{safe_name(stream)}/state", b"", self.cfg.qos, True))

    async def publish_stats(self, stats: Mapping[str, Any]) -> None:
        """Queue a JSON counters message for ``<prefix>/stats`` (not retained)."""
        payload = json.dumps(dict(stats), separators=(",", ":"), default=str).encode()
        self._enqueue(Outgoing(self.stats_topic, payload, self.cfg.qos, False))

    async def close(self) -> None:
        """Flush the outbox (at most ``flush_timeout_s``), publish retained ``offline``, disconnect."""
        if self._task is None:
            return
        self._closing.set()
        self._wakeup.set()
        task = self._task
        try:
            await asyncio.wait_for(asyncio.shield(task), self.cfg.flush_timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, self.cfg.timeout_s)
        except Exception as exc:  # the publisher task died: report, never raise from close
            self._log.error("MQTT: publisher stopped with an error: %s", describe_error(exc))
        finally:
            self._task = None
            self.connected = False
        lost = sum(1 for item in (*self._outbox, *self._unacked) if item.index < 0)
        if self.spool is not None:
            kept = len(self._outbox) + len(self._unacked) - lost
            if kept or self._backlog:
                self._log.warning(
                    "MQTT: %d messages stay in the spool for the next start", self.spool.pending
                )
            self.spool.close()
        if lost:
            self.dropped += lost
            if self.refused is None:  # a refusal is reported once, as the daemon's error
                self._log.warning(
                    "MQTT: %d messages not delivered to %s before shutdown (%s)",
                    lost,
                    self.endpoint,
                    "outbox flush timed out" if self._ever_connected else "broker never reached",
                )
            self._outbox.clear()
            self._unacked.clear()

    def counters(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "dropped": self.dropped,
            "queued": len(self._outbox),
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "connected": self.connected,
            **(self.spool.counters() if self.spool is not None else {}),
            **({"spool_errors": self.spool_errors} if self.spool is not None else {}),
        }

    # -- internals ------------------------------------------------------------------------------
    def _enqueue(self, item: Outgoing) -> None:
        """Queue a memory-only message; when full, drop the oldest memory-only one (counted)."""
        if len(self._outbox) >= self.cfg.outbox_size:
            self.dropped += 1
            victim = next((i for i, it in enumerate(self._outbox) if it.index < 0), None)
            if victim is None:
                return  # the outbox holds only spooled messages: they are never dropped here
            del self._outbox[victim]
        self._outbox.append(item)
        self._wakeup.set()

    def _refill(self) -> None:
        """Load spooled messages into the outbox, oldest first, while there is room."""
        if self.spool is None or not self._backlog:
            return
        room = self.cfg.outbox_size - len(self._outbox)
        if room <= 0:
            return
        entries = self.spool.read(self._loaded, room)
        for e in entries:
            self._outbox.append(Outgoing(e.topic, e.payload, e.qos, e.retain, e.index))
            self._loaded = e.index
        if len(entries) < room:
            self._backlog = False  # caught up with the disk: new messages go to memory again

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.cfg.reconnect_min_s
        connected_at = 0.0
        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        while True:
            client = self.cfg.make_client(will=will)
            try:
                async with client:
                    self.connected = True
                    connected_at = loop.time()
                    if self._ever_connected:
                        self.reconnects += 1
                    self._log.log(
                        logging.WARNING if self._failing else logging.INFO,
                        "MQTT: %s to %s%s",
                        "reconnected" if self._ever_connected else "connected",
                        self.endpoint,
                        f" after {self._failing} failed attempts" if self._failing else "",
                    )
                    self._ever_connected = True
                    self._failing = 0
                    await self._session(client)
                self.connected = False
                return
            except (aiomqtt.MqttError, OSError) as exc:
                was_connected, self.connected = self.connected, False
                reason = describe_error(exc)
                if was_connected:
                    if loop.time() - connected_at >= _STABLE_S or self._closing.is_set():
                        self._log.warning(
                            "MQTT: lost connection to %s: %s; reconnecting", self.endpoint, reason
                        )
                        delay = self.cfg.reconnect_min_s
                        continue
                    # Dropped right after connecting (e.g. another client with our client id):
                    # back off as for a failed attempt instead of spinning.
                    self._log.warning(
                        "MQTT: connection to %s dropped at once: %s; retrying in %.1fs",
                        self.endpoint,
                        reason,
                        delay,
                    )
                    await self._sleep_unless_closing(delay)
                    delay = min(delay * 2, self.cfg.reconnect_max_s)
                    continue
                self.connect_failures += 1
                self.refused = refusal(exc, self.endpoint)
                if self.refused is not None:  # wrong password, not authorised: retrying cannot help
                    self.refused_event.set()
                    return
                if self._closing.is_set():
                    # One last attempt was made after close(); give up rather than spin (close() says
                    # how many messages that leaves undelivered).
                    self._log.debug("MQTT: cannot reach broker at %s: %s; giving up", self.endpoint, reason)
                    return
                self._failing += 1
                self._log.log(  # once per outage: a broker away for hours must not fill the journal
                    logging.WARNING if self._failing == 1 else logging.DEBUG,
                    "MQTT: cannot reach broker at %s: %s; retrying with backoff (%g s doubling up to %g s)"
                    " until it answers, records wait in the outbox%s",
                    self.endpoint,
                    reason,
                    self.cfg.reconnect_min_s,
                    self.cfg.reconnect_max_s,
                    " and the spool" if self.spool is not None else "",
                )
                await self._sleep_unless_closing(delay)
                delay = min(delay * 2, self.cfg.reconnect_max_s)

    async def _sleep_unless_closing(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish ``online``, drain the outbox until closing, then publish ``offline``.

        Up to ``max_inflight`` publishes are outstanding at once; they go on the wire in call
        order and are retired in order as the broker acknowledges them. Whatever is unacknowledged
        when the link drops stays in ``_unacked`` and is sent first on the next connection.
        """
        watcher = asyncio.create_task(_watch(client))
        pending: deque[asyncio.Task[None]] = deque()  # parallel to self._unacked

        def send(item: Outgoing) -> None:
            pending.append(
                asyncio.create_task(
                    client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                )
            )

        try:
            await _race(watcher, client.publish(self.status_topic, b"online", qos=1, retain=True))
            for item in self._unacked:
                send(item)
            while True:
                self._refill()
                while self._outbox and len(self._unacked) < self.cfg.max_inflight:
                    item = self._outbox.popleft()
                    self._unacked.append(item)
                    send(item)
                if not pending:
                    if self._closing.is_set():
                        break
                    self._wakeup.clear()
                    await _race(watcher, self._wakeup.wait())
                    continue
                await _race(watcher, asyncio.shield(pending[0]))
                pending.popleft()
                done = self._unacked.popleft()
                self.published += 1
                if done.index >= 0 and self.spool is not None:
                    self.spool.ack(done.index)
            await _race(watcher, client.publish(self.status_topic, b"offline", qos=1, retain=True))
        except asyncio.CancelledError:
            # close() gave up flushing (a hung broker). The clean DISCONNECT that follows makes the
            # broker discard the will, so say "offline" ourselves, best effort.
            if not watcher.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(
                        client.publish(self.status_topic, b"offline", qos=1, retain=True), 1.0
                    )
            raise
        finally:
            for task in pending:
                task.cancel()
            watcher.cancel()
            await asyncio.gather(watcher, *pending, return_exceptions=True)


async def _watch(client: aiomqtt.Client) -> None:
    """Raise MqttError when the connection drops (iterating messages is aiomqtt's public signal)."""
    async for _ in client.messages:
        pass
    raise aiomqtt.MqttError("connection closed")


async def _race(watcher: asyncio.Task[None], aw: Awaitable[T]) -> T:
    """Await ``aw`` unless the connection drops first (then raise the watcher's MqttError).

    aiomqtt does not fail pending publishes on disconnect; without this a publish would hang
    until its timeout.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(aw)
    both: set[asyncio.Future[Any]] = {watcher, task}
    try:
        done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task
    exc = watcher.exception()
    raise exc if isinstance(exc, aiomqtt.MqttError) else aiomqtt.MqttError("connection closed")


async def check_broker(target: str | MqttConfig, timeout: float = 5.0) -> None:
    """Connect and disconnect once; raise BrokerUnreachableError with a one-line reason otherwise.

    For users who want a missing broker to fail fast (``emotrack listen/run --check-broker``).
    """
    cfg = MqttConfig(url=target) if isinstance(target, str) else target
    ep = cfg.endpoint()
    client = cfg.make_client(identifier=f"{cfg.resolved_client_id()}-check")
    try:
        async with asyncio.timeout(timeout):
            async with client:
                pass
    except TimeoutError:
        raise BrokerUnreachableError(
            f"cannot reach MQTT broker at {ep}: no answer within {timeout:g}s"
        ) from None
    except aiomqtt.MqttError as exc:
        raise BrokerUnreachableError(f"cannot reach MQTT broker at {ep}: {describe_error(exc)}") from None
