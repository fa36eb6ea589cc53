"""The broker a bench publishes through: a given URL, else Debian's mosquitto, else embedded amqtt.

A real broker process (mosquitto) on a free loopback port keeps the broker's CPU out of the measured
daemon; the embedded amqtt fallback runs in the bench's parent process, also not the daemon's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BenchBrokerError(RuntimeError):
    """The bench's own broker could not start; one line naming it."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def find_mosquitto() -> str | None:
    for p in MOSQUITTO_PATHS:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("mosquitto")


class BenchBroker:
    """``async with BenchBroker(url) as b: b.url`` — ``url`` None starts one of our own."""

    def __init__(self, url: str | None = None, host: str = "127.0.0.1", *, mosquitto: bool = True) -> None:
        self.url = url or ""
        self.mosquitto = mosquitto  # False: the embedded amqtt broker even where mosquitto is installed
        self.kind = "external" if url else ""
        self.host = host
        self._proc: asyncio.subprocess.Process | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._embedded: object | None = None

    async def __aenter__(self) -> BenchBroker:
        if self.kind == "external":
            return self
        exe = find_mosquitto() if self.mosquitto else None
        if exe is not None:
            await self._start_mosquitto(exe)
        else:
            await self._start_amqtt()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _start_mosquitto(self, exe: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="emotrack-bench-mosquitto-")
        work = Path(self._tmp.name)
        os.chmod(work, 0o777)  # mosquitto started as root drops to user mosquitto
        port = free_port(self.host)
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {port} {self.host}\nallow_anonymous true\npersistence false\n"
            f"log_dest file {work}/mosquitto.log\nlog_type error\nlog_type warning\n"
            "max_queued_messages 100000\n"
        )
        os.chmod(conf, 0o644)
        self._proc = await asyncio.create_subprocess_exec(
            exe, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                err = (await self._proc.stderr.read()).decode(errors="replace") if self._proc.stderr else ""
                raise BenchBrokerError(f"{exe} exited with {self._proc.returncode}: {' '.join(err.split())}")
            if await asyncio.to_thread(_accepts, self.host, port):
                self.url, self.kind = f"mqtt://{self.host}:{port}", "mosquitto"
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise BenchBrokerError(f"{exe} did not accept connections on {self.host}:{port} within 10 s")

    async def _start_amqtt(self) -> None:
        from streamer.sinks.broker import EmbeddedBroker

        broker = EmbeddedBroker(self.host, 0)
        port = await broker.start()
        self._embedded = broker
        self.url, self.kind = f"mqtt://{self.host}:{port}", "amqtt (embedded)"

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._proc = None
        if self._embedded is not None:
            from streamer.sinks.broker import EmbeddedBroker

            assert isinstance(self._embedded, EmbeddedBroker)
            await self._embedded.stop()
            self._embedded = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
