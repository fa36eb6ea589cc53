"""systemd notification protocol (sd_notify) without a dependency, and a progress-gated watchdog.

systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract namespace) and, when
``WatchdogSec=`` is set, ``$WATCHDOG_USEC`` (+ ``$WATCHDOG_PID``). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends ``KEY=VALUE`` datagrams to the service manager; silent when not run by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET") or None
        self._address: str | bytes | None = None
        if path:
            # "@name" is Linux's abstract namespace: a leading NUL byte instead of the "@".
            self._address = b"\0" + path[1:].encode() if path.startswith("@") else path
        self._watchdog_usec = 0
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            self._watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self.dropped = 0  # notifications lost because the manager's socket queue was full

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pets (half of WatchdogSec), or None when the watchdog is off."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec else None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of newline-separated assignments; False when there is nobody to tell."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a slow reader must never stall the event loop
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except BlockingIOError:
            self.dropped += 1
            return False
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeat:
    """Stages call ``beat()`` whenever they move work forward; the watchdog reads ``count``."""

    def __init__(self) -> None:
        self.count = 0
        self.last = time.monotonic()

    def beat(self) -> None:
        self.count += 1
        self.last = time.monotonic()


async def watchdog_loop(
    notifier: SdNotifier,
    heartbeat: Heartbeat,
    busy: Callable[[], bool],
    interval: float,
) -> None:
    """Pet the watchdog only while the pipeline advances, or while it has nothing to do.

    A stalled engine or a hung source leaves work pending without beats: the pets stop and systemd
    restarts the service after WatchdogSec.
    """
    seen = heartbeat.count
    while True:
        await asyncio.sleep(interval)
        if heartbeat.count != seen or not busy():
            notifier.watchdog()
        else:
            log.warning("watchdog: no stage advanced for %.1f s with work pending", interval)
        seen = heartbeat.count
