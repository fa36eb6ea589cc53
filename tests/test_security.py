"""Security checks: client certificates plus password, no secrets in output, private state files,
engines verified before use, loopback-only PCM socket by default, systemd sandbox score."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from streamer.sinks.mqtt import BrokerUnreachableError, MqttConfig, MqttSink, check_broker
from streamer.sources.spec import open_source, parse_spec
from streamer.statedir import open_state
from tests import sample_records as rec
from tests.daemon_helpers import cli_cmd, cli_env, start_cli
from tests.fixtures_mqtt import MosquittoFactory, MosquittoServer, Subscriber, free_port
from tests.test_sink_mqtt_secure import make_certs, openssl

SECRET = "pw-" + uuid.uuid4().hex[:10]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mtls_broker(mosquitto_factory: MosquittoFactory) -> tuple[MosquittoServer, int, Path]:
    """TLS listener that requires a CA-signed client certificate AND a password; a plain one for tests."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    d = mosquitto_factory.workdir()
    ca, cert, key = make_certs(d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=emotrack-daemon", cwd=d)  # fmt: skip
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.crt", "-days", "1", cwd=d)  # fmt: skip
    pwfile = d / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "daemon", SECRET], check=True)
    os.chmod(pwfile, 0o644)
    plain = free_port()
    server = mosquitto_factory.start(
        d,
        extra=[
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
            "require_certificate true",
            f"password_file {pwfile}",
            f"listener {plain} 127.0.0.1",
        ],
        anonymous=False,
    )
    return server, plain, d


async def test_client_certificate_and_password_together(
    mtls_broker: tuple[MosquittoServer, int, Path], mqtt_prefix: str
) -> None:
    server, plain, d = mtls_broker
    url = f"mqtts://127.0.0.1:{server.port}"
    full = MqttConfig(
        url=url,
        ca_file=str(d / "ca.crt"),
        cert_file=str(d / "client.crt"),
        key_file=str(d / "client.key"),
        username="daemon",
        password=SECRET,
        prefix=mqtt_prefix,
    )
    await check_broker(full, timeout=10)
    no_cert = MqttConfig(url=url, ca_file=str(d / "ca.crt"), username="daemon", password=SECRET)
    with pytest.raises(BrokerUnreachableError) as ei:
        await check_broker(no_cert, timeout=10)
    assert "\n" not in str(ei.value) and SECRET not in str(ei.value)
    wrong_pw = MqttConfig(
        url=url,
        ca_file=str(d / "ca.crt"),
        cert_file=str(d / "client.crt"),
        key_file=str(d / "client.key"),
        username="daemon",
        password="not-it",
    )
    with pytest.raises(BrokerUnreachableError):
        await check_broker(wrong_pw, timeout=10)
    async with Subscriber("127.0.0.1", plain, mqtt_prefix, username="daemon", password=SECRET) as sub:
        sink = MqttSink(full)
        await sink.start()
        await sink.emit(rec.window("sec", 7))
        got = await sub.wait_count("sec/window", 1)
        await sink.close()
    assert got[0].json()["seq"] == 7
    assert SECRET not in repr(full) and SECRET not in str(sink.counters())


async def test_no_password_in_config_output_or_daemon_logs(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens: the daemon logs its reconnect attempts
    url = f"mqtt://alice:{SECRET}@127.0.0.1:{port}"
    toml = tmp_path / "emotrack.toml"
    toml.write_text(f'[mqtt]\nurl = "{url}"\npassword = "{SECRET}"\n')
    checked = subprocess.run(
        [*cli_cmd("config", "--check", str(toml))], capture_output=True, text=True, env=cli_env(), cwd=REPO
    )
    assert checked.returncode == 0, checked.stderr
    assert SECRET not in checked.stdout + checked.stderr
    defaults = subprocess.run(
        [*cli_cmd("config", "--defaults")], capture_output=True, text=True, env=cli_env(), cwd=REPO
    )
    assert SECRET not in defaults.stdout
    logs = tmp_path / "logs"
    p = await start_cli(
        "-v",
        "run",
        "-c",
        str(toml),
        "--engine",
        str(tiny_engine_dir),
        "--threads",
        "1",
        "--log-dir",
        str(logs),
        "--source",
        f"file:{speech_wav}?id=sec",
        "--set",
        "mqtt.flush_timeout_s=1",
        "--set",
        "mqtt.reconnect_max_s=0.5",
        "--set",
        f"daemon.state_directory={tmp_path / 'state'}",
    )
    await p.wait(90)
    text = (p.stdout + p.stderr).decode(errors="replace")
    assert "cannot reach broker" in text  # it did log about the broker...
    assert SECRET not in text  # ...without the password
    for f in [*logs.rglob("*"), *(tmp_path / "state").rglob("*")]:
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_state_files_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        state = open_state(tmp_path / "state", MqttConfig())
        assert state is not None and state.spool is not None
        state.spool.append("t", b"{}", 1, False)
        state.seqstore.use("s", 0)
        state.close()
    finally:
        os.umask(old)
    for p in [tmp_path / "state", *(tmp_path / "state").rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


async def test_modified_model_is_refused_by_run(
    tiny_engine_copy: Path, speech_wav: Path, tmp_path: Path
) -> None:
    model = tiny_engine_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, different weights
    model.write_bytes(bytes(data))
    p = await start_cli(
        "run",
        "--engine",
        str(tiny_engine_copy),
        "--no-logs",
        "--source",
        f"file:{speech_wav}",
        "--set",
        f"daemon.state_directory={tmp_path / 'state'}",
    )
    code = await p.wait(60)
    err = p.stderr.decode()
    assert code == 1
    assert "model.onnx" in err and "checksum" in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


async def test_pcm_socket_binds_loopback_by_default() -> None:
    spec = parse_spec(f"tcp://:{free_port()}")
    src = open_source(spec)
    await src.start()  # type: ignore[attr-defined]
    try:
        server = src._server  # type: ignore[attr-defined]
        hosts = {s.getsockname()[0] for s in server.sockets}
        assert hosts <= {"127.0.0.1", "::1"}, hosts
        # Not reachable on another local address (e.g. 127.0.0.2 is loopback but a different address).
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(OSError):
            _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.2", port), 5)
            w.close()
    finally:
        await src.aclose()


def test_systemd_unit_security_score() -> None:
    """``systemd-analyze security --offline=yes``: the unit's exposure stays "OK" (<= 2.0)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = REPO / "systemd" / "emotrack.service"
    r = subprocess.run(
        [tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=120
    )
    line = next((ln for ln in r.stdout.splitlines() if "Overall exposure level" in ln), None)
    if line is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {r.stderr.strip()[:200]}")
    score = float(line.split(":")[1].split()[0])
    print(f"\n[security] {line.strip()}")
    assert score <= 2.0, line
