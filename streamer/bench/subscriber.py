"""The bench's MQTT subscriber, run as its own process so its CPU is not the daemon's.

``python -m streamer.bench.subscriber URL PREFIX OUT`` subscribes to ``PREFIX/#``, prints ``ready`` once
subscribed, stamps every message with its receipt wall time, and when the daemon's ``PREFIX/status``
turns ``offline`` after having been ``online`` (everything it published has then arrived: a broker keeps
one publisher's order per subscriber), writes ``OUT`` as JSON lines ``{"t", "topic", "payload"}`` and
exits. SIGTERM writes what arrived and exits too.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from streamer.sinks.mqtt_config import MqttConfig


async def collect(url: str, prefix: str, out: Path) -> int:
    cfg = MqttConfig(url=url)  # user:pass@ and mqtts:// in the URL apply, as for the daemon
    got: list[tuple[float, str, bytes]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    online = False
    async with cfg.make_client(identifier=f"emotrack-bench-sub-{prefix}") as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        print("ready", flush=True)
        it = aiter(client.messages)
        stopper = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(it))
            await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                break
            msg = nxt.result()
            now = time.time()
            topic = str(msg.topic)
            payload = bytes(msg.payload) if isinstance(msg.payload, bytes | bytearray) else b""
            got.append((now, topic, payload))
            if topic == f"{prefix}/status":
                if payload == b"online":
                    online = True
                elif payload == b"offline" and online:
                    break
        stopper.cancel()
    write(out, got)
    return 0


def write(out: Path, got: list[tuple[float, str, bytes]]) -> None:
    with open(out, "w") as fh:
        for t, topic, payload in got:
            body: Any
            try:
                body = json.loads(payload)
            except ValueError:
                body = payload.decode(errors="replace")
            fh.write(json.dumps({"t": t, "topic": topic, "payload": body}, separators=(",", ":")) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m streamer.bench.subscriber URL PREFIX OUT", file=sys.stderr)
        return 2
    return asyncio.run(collect(argv[0], argv[1], Path(argv[2])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
