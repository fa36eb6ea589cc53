"""A broker that refuses us is permanent, one that is away is not: ``emotrack run`` against a real Mosquitto
with a password file (wrong password: one error line, non-zero exit, for a file and for a live source) and
against a port where nothing listens (one line saying it retries; records still logged)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.daemon_helpers import base_args, start_cli, wait_until
from tests.fault_report import report
from tests.fixtures_mqtt import MosquittoServer, free_port, port_accepts


def _lines(data: bytes) -> list[str]:
    return [x for x in data.decode(errors="replace").splitlines() if x.strip()]


async def test_wrong_password_file_source_is_one_error_and_exit_1(
    auth_broker: MosquittoServer, tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    base = f"127.0.0.1:{auth_broker.port}"
    logs = tmp_path / "logs"
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            logs,
            "--source",
            f"file:{speech_wav}?id=auth",
            "--mqtt",
            f"mqtt://alice:wrong@{base}",
        )
    )
    rc = await p.wait(90)
    err = _lines(p.stderr)
    report("auth_failure_file_source", {"exit_code": rc, "stderr_lines": len(err)})
    assert rc == 1, err
    assert len(err) == 1, err
    assert err[0].startswith(f"emotrack: error: MQTT broker at {base} refused the connection: "), err
    assert "not authori" in err[0].lower() or "password" in err[0].lower(), err
    assert "wrong" not in err[0]


async def test_wrong_password_live_source_stops_with_exit_1(
    auth_broker: MosquittoServer, tiny_engine_dir: Path, tmp_path: Path
) -> None:
    """A live source never ends on its own: before the fix the daemon retried the refusal forever."""
    port = free_port()
    started = asyncio.get_running_loop().time()
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            tmp_path / "logs",
            "--source",
            f"tcp://127.0.0.1:{port}?id=live",
            "--mqtt",
            f"mqtt://alice:wrong@127.0.0.1:{auth_broker.port}",
            "--set",
            "mqtt.reconnect_min_s=0.05",
        )
    )
    try:
        rc = await p.wait(30)
    finally:
        await p.kill()
    took = round(asyncio.get_running_loop().time() - started, 1)  # start-up (engine load) included
    err = _lines(p.stderr)
    report("auth_failure_live_source", {"exit_code": rc, "stderr_lines": len(err), "seconds_to_exit": took})
    assert rc == 1, err
    assert len(err) == 1 and "refused the connection" in err[0], err


async def test_unreachable_broker_retries_and_says_so_once(tiny_engine_dir: Path, tmp_path: Path) -> None:
    mqtt_port, src_port = free_port(), free_port()
    p = await start_cli(
        *base_args(
            tiny_engine_dir,
            tmp_path / "logs",
            "--source",
            f"tcp://127.0.0.1:{src_port}?id=live",
            "--mqtt",
            f"mqtt://127.0.0.1:{mqtt_port}",
            "--set",
            "mqtt.reconnect_min_s=0.05",
            "--set",
            "mqtt.reconnect_max_s=0.1",
            "--set",
            "mqtt.flush_timeout_s=0.5",
        )
    )
    try:
        await wait_until(lambda: port_accepts("127.0.0.1", src_port), 60, "the PCM source to listen")
        await asyncio.sleep(2.0)  # ~20 connection attempts at 0.05-0.1 s
        p.signal(signal.SIGTERM)
        rc = await p.wait(60)
    finally:
        await p.kill()
    err = _lines(p.stderr)
    unreachable = [x for x in err if "cannot reach" in x]
    assert rc == 0, err
    assert len(unreachable) == 1, err
    assert f"127.0.0.1:{mqtt_port}" in unreachable[0] and "retrying" in unreachable[0], err
