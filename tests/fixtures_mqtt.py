"""MQTT test fixtures: a real Mosquitto on a free loopback port and a real aiomqtt subscriber.

Registered in tests/conftest.py (``pytest_plugins``). Usage::

    async def test_x(mosquitto, subscriber, mqtt_prefix):
        ...  # publish under mqtt_prefix to mosquitto.host:mosquitto.port
        msgs = await subscriber.wait_for(lambda ms: any(m.topic.endswith("/state") for m in ms))

``mosquitto.stop()`` / ``mosquitto.start()`` restart the broker on the same port (outage tests);
persistence is on, so retained messages and the subscriber's persistent session (QoS 1) survive a
restart and messages published while the subscriber was reconnecting are still delivered. After a
restart Mosquitto 2.0 may deliver again messages the subscriber had already acknowledged (QoS 1 is
at-least-once): dedupe by (stream, seq) before comparing. ``pause()``/``resume()`` (SIGSTOP/SIGCONT)
make a hung broker. ``mosquitto_factory`` starts extra servers (TLS listener, password file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

MOSQUITTO = "/usr/sbin/mosquitto"
REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago on ``host`` (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoServer:
    """Debian's mosquitto with its config, pid, log and persistence in one tmp dir.

    The dir is 0777 because mosquitto started as root drops privileges to user ``mosquitto``.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        extra: Sequence[str] = (),
        anonymous: bool = True,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o777)
        self.conf = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    *extra,
                    f"allow_anonymous {'true' if anonymous else 'false'}",
                    "persistence true",
                    f"persistence_location {workdir}/",
                    "persistence_file mosquitto.db",
                    "autosave_interval 1",
                    f"pid_file {workdir}/mosquitto.pid",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "connection_messages true",
                    "max_queued_messages 10000",
                    "",
                ]
            )
        )
        os.chmod(self.conf, 0o644)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart on the same port) and wait until the port accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err.strip()}")
            if port_accepts(self.host, self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not accept connections on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown (SIGTERM: persistence is saved, clients see the socket close)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close_pipes()

    def pause(self) -> None:
        """SIGSTOP: the broker hangs with its sockets open (a stalled, not a dead, broker)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()  # SIGKILL also ends a SIGSTOPped process
            self._proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    """A fresh Mosquitto per test on a free loopback port; killed and cleaned up at teardown.

    Its dir is made directly under the system temp dir: pytest's tmp_path parents are 0700, which
    the ``mosquitto`` user could not traverse.
    """
    if not os.path.exists(MOSQUITTO):
        pytest.skip(f"mosquitto is not installed at {MOSQUITTO} (apt-get install mosquitto)")
    workdir = Path(tempfile.mkdtemp(prefix="emotrack-mosquitto-"))
    server = MosquittoServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


class MosquittoFactory:
    """Builds extra Mosquitto servers (TLS listener, password file...) with files in their dir."""

    def __init__(self) -> None:
        self.servers: list[MosquittoServer] = []
        self.dirs: list[Path] = []

    def workdir(self) -> Path:
        """A 0777 dir under the system temp dir for a server's config and the files it reads."""
        d = Path(tempfile.mkdtemp(prefix="emotrack-mosquitto-"))
        os.chmod(d, 0o777)
        self.dirs.append(d)
        return d

    def start(self, workdir: Path, *, extra: Sequence[str] = (), anonymous: bool = True) -> MosquittoServer:
        server = MosquittoServer(workdir, extra=extra, anonymous=anonymous)
        self.servers.append(server)
        server.start()
        return server

    def cleanup(self) -> None:
        for server in self.servers:
            server.kill()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mosquitto_factory() -> Iterator[MosquittoFactory]:
    if not os.path.exists(MOSQUITTO):
        pytest.skip(f"mosquitto is not installed at {MOSQUITTO} (apt-get install mosquitto)")
    factory = MosquittoFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def auth_broker(mosquitto_factory: MosquittoFactory) -> MosquittoServer:
    """Mosquitto with a password file (user ``alice``, password ``s3cret-pw``), no anonymous access."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    d = mosquitto_factory.workdir()
    pwfile = d / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "alice", "s3cret-pw"], check=True)
    os.chmod(pwfile, 0o644)
    return mosquitto_factory.start(d, extra=[f"password_file {pwfile}"], anonymous=False)


@pytest.fixture
def mqtt_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"emotrack-test/{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A real aiomqtt client subscribed to ``<prefix>/#`` that collects everything it receives.

    It reconnects by itself when the broker goes away (persistent session, QoS 1), so it can
    watch across broker restarts.
    """

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        *,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.prefix = prefix
        self.qos = qos
        self.messages: list[Received] = []
        self.identifier = f"sub-{uuid.uuid4().hex[:12]}"
        self._changed = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self._subscribed.wait(), 10)
        except TimeoutError:
            await self.close()
            raise RuntimeError(f"subscriber could not subscribe at {self.host}:{self.port}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.identifier,
                    clean_session=False,
                    keepalive=5,
                    username=self.username,
                    password=self.password,
                ) as client:
                    await client.subscribe(f"{self.prefix}/#", qos=self.qos)
                    self._subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.messages.append(Received(m.topic.value, payload, bool(m.retain), m.qos))
                        self._changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def on(self, suffix: str) -> list[Received]:
        """Messages whose topic is ``<prefix>/<suffix>``."""
        topic = f"{self.prefix}/{suffix}"
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Wait until ``predicate(all messages so far)`` holds; AssertionError naming what arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.messages):
            left = deadline - loop.time()
            if left <= 0:
                seen = [(m.topic, m.payload[:60], m.retain) for m in self.messages[-20:]]
                raise AssertionError(f"condition not met within {timeout}s; last messages: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return list(self.messages)

    async def wait_count(self, suffix: str, n: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``n`` messages arrived on ``<prefix>/<suffix>``; return those."""
        await self.wait_for(lambda _: len(self.on(suffix)) >= n, timeout)
        return self.on(suffix)


@pytest.fixture
async def subscriber(mosquitto: MosquittoServer, mqtt_prefix: str) -> AsyncIterator[Subscriber]:
    """A subscriber on ``<mqtt_prefix>/#`` of the test's Mosquitto, subscribed before the test runs."""
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as sub:
        yield sub
