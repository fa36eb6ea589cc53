"""Socket clients' streams leave nothing behind on the broker, and their ids never repeat across daemon
restarts: the real CLI, a real Mosquitto, Home Assistant discovery on, and real subscribers (a late one
sees only what is still retained)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import soundfile as sf

from tests.daemon_helpers import base_args, call_tcp, start_cli, wait_until
from tests.fixtures_mqtt import MosquittoServer, Received, Subscriber, free_port


def streams_of(msgs: list[Received], prefix: str) -> set[str]:
    """Stream ids with a state topic ``<prefix>/<stream>/state`` among ``msgs``."""
    return {m.topic[len(prefix) + 1 : -len("/state")] for m in msgs if m.topic.endswith("/state")}


def entities(msgs: list[Received], dp: str, stream: str, removed: bool = False) -> list[Received]:
    """Discovery config messages of ``stream`` (only the removals, empty payloads, if ``removed``)."""
    return [
        m for m in msgs if m.topic.startswith(f"{dp}/") and stream in m.topic and not (removed and m.payload)
    ]


def retained(msgs: list[Received]) -> dict[str, bytes]:
    """Topic -> payload of the retained messages a fresh subscriber got."""
    return {m.topic: m.payload for m in msgs if m.retain and m.payload}


async def test_socket_streams_clear_retained_state_and_entities_and_ids_differ_across_restarts(
    mosquitto: MosquittoServer,
    subscriber: Subscriber,
    mqtt_prefix: str,
    tiny_engine_dir: Path,
    speech_wav: Path,
    tmp_path: Path,
) -> None:
    pcm = sf.read(str(speech_wav), dtype="int16")[0].astype("<i2").tobytes()
    prefix, dp = f"{mqtt_prefix}/et", f"{mqtt_prefix}/ha"
    callers: list[str] = []
    for run in range(2):
        port = free_port()
        p = await start_cli(
            *base_args(
                tiny_engine_dir, tmp_path / f"logs{run}",
                "--source", f"tcp://127.0.0.1:{port}?id=caller&backpressure=1",
                *(["--source", f"file:{speech_wav}?id=desk"] if run == 0 else []),
                "--mqtt", mosquitto.url, "--prefix", prefix,
                "--set", "mqtt.homeassistant=true", "--set", f"mqtt.discovery_prefix={dp}",
            )
        )  # fmt: skip
        try:
            await call_tcp(port, pcm)
            new = await subscriber.wait_for(
                lambda ms: len(streams_of(ms, prefix) - {"desk", *callers}) == 1, 60
            )
            (caller,) = streams_of(new, prefix) - {"desk", *callers}
            callers.append(caller)
            state = f"{prefix}/{caller}/state"
            # the caller's retained state, then its removal (an empty retained message), in that order
            await subscriber.wait_for(lambda ms, t=state: any(m.topic == t and not m.payload for m in ms), 60)
            states = [m for m in subscriber.messages if m.topic == state]
            assert states[-1].payload == b"" and states[-2].json()["status"] == "ended"
            # its five Home Assistant entities were announced, then removed
            await subscriber.wait_for(lambda ms, c=caller: len(entities(ms, dp, c, removed=True)) == 5, 30)
            configs = entities(subscriber.messages, dp, caller)
            assert len({m.topic for m in configs}) == 5 and len(configs) == 10
            if run == 0:
                await wait_until(
                    lambda: any(
                        m.topic == f"{prefix}/desk/state" and m.payload and m.json()["status"] == "ended"
                        for m in subscriber.messages
                    ),
                    60,
                    "the file stream to end",
                )
            # what a subscriber arriving now (Home Assistant starting) is handed
            async with Subscriber(mosquitto.host, mosquitto.port, mqtt_prefix) as late:
                await late.wait_for(lambda ms: f"{prefix}/status" in retained(ms), 10)
                await asyncio.sleep(0.5)
                kept = retained(late.messages)
            assert not [t for t in kept if any(c in t for c in callers)], kept
            # a file's stream is not ephemeral: its last state and entities stay
            assert f"{prefix}/desk/state" in kept
            assert sum(1 for t in kept if t.startswith(f"{dp}/") and "desk" in t) == 5
            p.signal(signal.SIGTERM)
            assert await p.wait() == 0, p.stderr.decode()
        finally:
            await p.kill()
    assert callers[0] != callers[1], callers  # a restarted daemon never reuses a caller's id
    assert all(c.startswith("caller-") for c in callers)
