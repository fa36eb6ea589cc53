"""Embedded MQTT broker (amqtt) for when no broker is configured: the daemon works out of the box.

It always binds loopback (amqtt's default is 0.0.0.0): anonymous access is only acceptable
because nothing off this machine can reach it. TCP only, no websockets listener, no $SYS plugin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from typing import Any

from amqtt.broker import Broker
from amqtt.errors import BrokerError

from streamer.sinks.base import SinkError

log = logging.getLogger("emotrack.broker")


class EmbeddedBrokerError(SinkError, RuntimeError):
    """The embedded broker could not start (port taken, bad address); one line naming host:port."""


class EmbeddedBroker:
    """``async start() -> port`` / ``async stop()``; ``port=0`` picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise EmbeddedBrokerError(
                f"embedded MQTT broker must bind a loopback address (anonymous access), got {host}"
            )
        if not 0 <= port < 65536:
            raise EmbeddedBrokerError(f"embedded MQTT broker port must be 0..65535, got {port}")
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedBrokerError("embedded MQTT broker is not running")
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self.requested_port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    async def start(self) -> int:
        """Listen and return the bound port."""
        if self._broker is not None and self.port is not None:
            return self.port
        broker = Broker(self._config())
        amqtt_log = logging.getLogger("amqtt.broker")
        quiet = _NoStartupTraceback()
        amqtt_log.addFilter(quiet)  # we raise a one-line error instead of amqtt's traceback
        try:
            await broker.start()
        except (BrokerError, OSError) as exc:
            reason = exc.__cause__ if exc.__cause__ is not None else exc
            raise EmbeddedBrokerError(
                f"cannot start embedded MQTT broker on {self.host}:{self.requested_port}: {_reason(reason)}"
            ) from None
        finally:
            amqtt_log.removeFilter(quiet)
        self._broker = broker
        self.port = _bound_port(broker)
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await asyncio.wait_for(_shutdown(broker), 10)
        except (BrokerError, TimeoutError) as exc:
            log.warning("embedded MQTT broker did not stop cleanly: %s", _reason(exc))
        finally:
            self.port = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _shutdown(broker: Broker) -> None:
    """Stop accepting first, then shut down, then drop sessions that connected meanwhile.

    amqtt 0.12 closes its listeners only at the end of ``shutdown()`` and Python 3.11's
    ``Server.close()`` leaves accepted connections open, so a client reconnecting during shutdown
    would otherwise stay attached to a broker that no longer routes anything.
    """
    servers = getattr(broker, "_servers", {})
    for server in servers.values():
        instance = getattr(server, "instance", None)
        if instance is not None:
            instance.close()
    await broker.shutdown()
    sessions = getattr(broker, "_sessions", {})
    for client_id in list(sessions):
        await broker._cleanup_session(client_id)


def _bound_port(broker: Broker) -> int:
    server = broker._servers["default"].instance
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise EmbeddedBrokerError("embedded MQTT broker started without a listening socket")


class _NoStartupTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Broker startup failed"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
