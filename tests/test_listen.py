"""``emotrack listen`` against a real Mosquitto and a real daemon: it waits for a broker that is not up
yet, rides out a broker restart, and reports a daemon going offline as news, never as an error."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from tests.daemon_helpers import REPO, cli_cmd, cli_env
from tests.fixtures_mqtt import MOSQUITTO, MosquittoServer, free_port


class Lines:
    """A running ``emotrack listen`` (or any CLI) whose stdout and stderr lines are collected live."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = asyncio.Event()
        assert proc.stdout is not None and proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._pump(proc.stdout, self.out)),
            asyncio.create_task(self._pump(proc.stderr, self.err)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            if loop.time() > deadline:
                raise AssertionError(f"{what or 'condition'} not met; stdout={self.out} stderr={self.err}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.2)

    async def finish(self, timeout: float = 30.0, *, traceback_free: bool = True) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._tasks)
        assert not traceback_free or not any("Traceback" in x for x in self.err), self.err
        return rc

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for t in self._tasks:
            t.cancel()


async def start(*args: str, cwd: Path = REPO) -> Lines:
    proc = await asyncio.create_subprocess_exec(
        *cli_cmd(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=str(cwd),
    )
    return Lines(proc)


@contextlib.asynccontextmanager
async def running(*args: str, cwd: Path = REPO) -> AsyncIterator[Lines]:
    p = await start(*args, cwd=cwd)
    try:
        yield p
    finally:
        await p.kill()


async def publish(url_port: int, topic: str, payload: bytes, retain: bool = True) -> None:
    async with aiomqtt.Client("127.0.0.1", url_port, identifier=f"pub-{url_port}") as c:
        await c.publish(topic, payload, qos=1, retain=retain)


@pytest.fixture
def broker_later() -> AsyncIterator[MosquittoServer]:
    """A Mosquitto configured on a free port but not started: the test starts it."""
    if not Path(MOSQUITTO).exists():
        pytest.skip(f"mosquitto is not installed at {MOSQUITTO}")
    workdir = Path(tempfile.mkdtemp(prefix="emotrack-mosquitto-"))
    server = MosquittoServer(workdir)
    try:
        yield server  # type: ignore[misc]
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _waiting(err: list[str]) -> list[str]:
    return [x for x in err if x.startswith("emotrack listen: ") and "retrying" in x]


async def test_listen_started_before_the_broker_waits_for_it(broker_later: MosquittoServer) -> None:
    async with running("listen", "--mqtt", broker_later.url, "--prefix", "early", "--count", "1") as p:
        await p.wait_for(lambda: bool(_waiting(p.err)), what="a waiting line")
        await asyncio.sleep(1.5)  # several retries in backoff: still one line, still running
        assert p.proc.returncode is None and len(p.err) == 1, p.err
        assert f"waiting for the MQTT broker at 127.0.0.1:{broker_later.port}" in p.err[0], p.err
        broker_later.start()
        await publish(broker_later.port, "early/status", b"online")
        assert await p.finish() == 0
    assert p.out == ["status: online"]
    assert p.err[1:] == [f"emotrack listen: connected to MQTT broker at 127.0.0.1:{broker_later.port}"]


async def test_listen_rides_out_a_broker_restart(mosquitto: MosquittoServer) -> None:
    async with running("listen", "--mqtt", mosquitto.url, "--prefix", "rs", "--count", "3") as p:
        await publish(mosquitto.port, "rs/status", b"online")
        await p.wait_for(lambda: p.out == ["status: online"], what="the first message")
        mosquitto.stop()
        await p.wait_for(lambda: bool(_waiting(p.err)), what="a lost-broker line")
        assert "lost the MQTT broker" in p.err[0] and p.proc.returncode is None, p.err
        mosquitto.start()
        await publish(mosquitto.port, "rs/s1/state", b'{"type": "state", "stream": "s1", "status": "silent"}')
        assert await p.finish() == 0
    # after the reconnect: the retained status again and the new state, in either order
    assert sorted(x.split()[0] + x.split()[1] for x in p.out[1:]) == ["[s1]state", "status:online"], p.out
    assert "silent" in next(x for x in p.out if x.startswith("[s1] state"))
    assert not any("error:" in x for x in p.err), p.err


async def test_a_daemon_going_offline_is_news_not_an_error(tmp_path: Path) -> None:
    """The daemon's embedded broker stops with it: listen prints the offline status, waits, and
    follows the next daemon on that port."""
    port = free_port()
    daemon = (
        *("run", "--threads", "1", "--no-logs", "--broker-port", str(port), "--prefix", "off"),
        *("--set", f"daemon.state_directory={tmp_path / 'state'}"),
    )
    speech = tmp_path / "s.wav"
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    text = "Hello there. I am really happy to see you today."
    await (await asyncio.create_subprocess_exec("espeak-ng", "-w", str(speech), text)).wait()
    first = f"file:{speech}?id=s1&realtime=1"
    listen = ("listen", "--mqtt", f"mqtt://127.0.0.1:{port}", "--prefix", "off")
    async with running(*daemon, "--source", first, cwd=tmp_path) as d1, running(*listen) as p:
        await p.wait_for(lambda: "status: online" in p.out, what="the daemon online")
        before = len(p.err)  # listen may have waited for the daemon's broker to come up
        # Not checked traceback-free: the embedded amqtt broker sometimes stalls 10 s in shutdown
        # with a subscriber attached and logs a CancelledError (a daemon fault, not listen's).
        assert await d1.finish(60, traceback_free=False) == 0, d1.err
        await p.wait_for(lambda: len(_waiting(p.err[before:])) > 0, what="a waiting line")
        assert p.out[-1] == "status: offline", p.out
        assert p.proc.returncode is None, (p.out, p.err)
        assert p.err[before:] == [
            f"emotrack listen: the daemon went offline and the MQTT broker at 127.0.0.1:{port} closed; "
            "retrying until it answers (Ctrl-C to stop)"
        ]
        again = f"file:{speech}?id=s2&realtime=1&loop=1"
        async with running(*daemon, "--source", again, cwd=tmp_path) as d2:
            await p.wait_for(lambda: any(x.startswith("[s2] ") for x in p.out), 60, "the next daemon")
            d2.proc.send_signal(signal.SIGTERM)
            assert await d2.finish(60, traceback_free=False) == 0, d2.err
        p.proc.send_signal(signal.SIGINT)
        assert await p.finish() == 130
    assert not any("error:" in x for x in p.err), p.err
    assert f"emotrack listen: connected to MQTT broker at 127.0.0.1:{port}" in p.err[before + 1 :], p.err


async def test_a_refusal_is_final_not_waited_for(auth_broker: MosquittoServer) -> None:
    """Wrong credentials: retrying cannot help, so one error line and exit 1 at once."""
    url = f"mqtt://alice:wrong@127.0.0.1:{auth_broker.port}"
    async with running("listen", "--mqtt", url) as p:
        assert await p.finish(30) == 1
    assert len(p.err) == 1, p.err  # no "waiting" line: Mosquitto says "Not authorized" (135) here
    assert p.err[0].startswith(f"emotrack: error: MQTT broker at 127.0.0.1:{auth_broker.port} refused"), p.err
