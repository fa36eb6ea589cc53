"""MqttSink over TLS (a real CA and server cert made with openssl) and with a Mosquitto password file."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from streamer.sinks.mqtt import BrokerUnreachableError, MqttConfig, MqttSink, check_broker
from tests import sample_records as rec
from tests.fixtures_mqtt import MosquittoFactory, MosquittoServer, Subscriber, free_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "1", "-subj", "/CN=emotrack-test-ca", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "san.ext", cwd=d)  # fmt: skip
    for name in ("ca.crt", "server.crt", "server.key"):
        os.chmod(d / name, 0o644)  # read by the unprivileged mosquitto user
    return d / "ca.crt", d / "server.crt", d / "server.key"


@pytest.fixture
def tls_broker(mosquitto_factory: MosquittoFactory) -> tuple[MosquittoServer, int, Path]:
    """Mosquitto with a TLS listener (its main port) and a plain one for the test's subscriber."""
    d = mosquitto_factory.workdir()
    ca, cert, key = make_certs(d)
    plain = free_port()
    server = mosquitto_factory.start(
        d, extra=[f"cafile {ca}", f"certfile {cert}", f"keyfile {key}", f"listener {plain} 127.0.0.1"]
    )
    return server, plain, ca


async def test_tls_publish_with_ca_file(
    tls_broker: tuple[MosquittoServer, int, Path], mqtt_prefix: str
) -> None:
    server, plain, ca = tls_broker
    async with Subscriber("127.0.0.1", plain, mqtt_prefix) as sub:
        cfg = MqttConfig(url=f"mqtts://127.0.0.1:{server.port}", ca_file=str(ca), prefix=mqtt_prefix)
        await check_broker(cfg, timeout=10)
        sink = MqttSink(cfg)
        await sink.start()
        await sink.emit(rec.window("s1", 0))
        got = await sub.wait_count("s1/window", 1)
        await sink.close()
    assert got[0].json() == rec.window("s1", 0).to_dict()


async def test_tls_untrusted_server_is_refused_unless_insecure(
    tls_broker: tuple[MosquittoServer, int, Path], mqtt_prefix: str
) -> None:
    server, _, _ = tls_broker
    url = f"mqtts://127.0.0.1:{server.port}"
    with pytest.raises(BrokerUnreachableError) as ei:
        await check_broker(MqttConfig(url=url), timeout=10)
    assert "certificate verify failed" in str(ei.value) and "\n" not in str(ei.value)
    await check_broker(MqttConfig(url=url, insecure=True), timeout=10)


async def test_username_password(
    auth_broker: MosquittoServer, mqtt_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"127.0.0.1:{auth_broker.port}"
    with pytest.raises(BrokerUnreachableError) as ei:
        await check_broker(f"mqtt://alice:wrong@{base}", timeout=10)
    assert str(ei.value).startswith(f"cannot reach MQTT broker at {base}: ")
    assert "authorized" in str(ei.value).lower() or "password" in str(ei.value).lower()

    caplog.set_level(logging.INFO, logger="emotrack.mqtt")
    bad = MqttSink(MqttConfig(url=f"mqtt://alice:wrong@{base}", prefix=mqtt_prefix, reconnect_min_s=0.05))
    await bad.start()
    await bad.emit(rec.window("s1", 0))
    await asyncio.wait_for(bad.refused_event.wait(), 10)  # refused once: no retry can help
    await bad.close()
    assert bad.connect_failures == 1 and bad.published == 0
    assert str(bad.refused).startswith(f"MQTT broker at {base} refused the connection: ")
    assert "wrong" not in caplog.text and "wrong" not in str(bad.refused)

    cfg = MqttConfig(url=f"mqtt://{base}", username="alice", password="s3cret-pw", prefix=mqtt_prefix)
    assert "s3cret-pw" not in repr(cfg)
    async with Subscriber(
        "127.0.0.1", auth_broker.port, mqtt_prefix, username="alice", password="s3cret-pw"
    ) as sub:
        sink = MqttSink(replace(cfg, client_id=f"t-{uuid.uuid4().hex[:6]}"))
        await sink.start()
        await sink.emit(rec.window("s1", 1))
        got = await sub.wait_count("s1/window", 1)
        await sink.close()
    assert got[0].json()["seq"] == 1
    assert "s3cret-pw" not in caplog.text
