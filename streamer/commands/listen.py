"""``emotrack listen``: subscribe to a daemon's topics and print the streams readably (or raw JSON)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncGenerator
from typing import Any

HELP = "print the emotion streams a daemon publishes on MQTT"


class ListenError(Exception):
    """The broker refused us for good, or never answered within --timeout (one line naming host:port)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("listen", help=HELP, description=HELP)
    p.add_argument(
        "--mqtt", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker (mqtt[s]://host:port)"
    )
    p.add_argument("--prefix", default="emotrack", help="topic prefix (default: emotrack)")
    p.add_argument("--raw", action="store_true", help="print 'topic payload' lines as received")
    p.add_argument("--live", action="store_true", help="live table with history sparklines (needs rich)")
    p.add_argument("--json", action="store_true", help="one JSON object per message: topic, retain, payload")
    p.add_argument("--count", type=int, default=0, metavar="N", help="exit after N messages (0 = never)")
    p.add_argument("--timeout", type=float, default=0, metavar="S", help="exit after S seconds (0 = never)")
    return p


def _fmt(x: Any) -> str:
    return "   -" if x is None else f"{x:+.2f}"


def readable(topic: str, payload: bytes, prefix: str) -> str:
    """One human line per message: stream, kind, time span, label and V/A/D."""
    rest = topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else topic
    text = payload.decode(errors="replace")
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        return f"{rest}: {text}"
    if not isinstance(d, dict):
        return f"{rest}: {text}"
    kind = d.get("type")
    if kind in ("window", "utterance", "state"):
        vals = (
            d.get("smoothed")
            if kind == "window"
            else d.get("summary")
            if kind == "utterance"
            else d.get("current")
        )
        vals = vals or {}
        label, scores = vals.get("label"), vals.get("scores") or {}
        p = f" ({scores[label]:.2f})" if label in scores else ""
        span = (
            f"{d.get('start', 0):7.2f}-{d.get('end', 0):7.2f}s"
            if kind != "state"
            else f"{d.get('audio_time', 0):7.2f}s {d.get('status')}"
        )
        vad = f"v={_fmt(vals.get('valence'))} a={_fmt(vals.get('arousal'))} d={_fmt(vals.get('dominance'))}"
        return f"[{d.get('stream')}] {kind:<9} {span} {label or '-'}{p} {vad}"
    return f"{rest}: {json.dumps(d, separators=(',', ':'))}"


def json_line(topic: str, payload: bytes, retain: bool) -> str:
    """A message as one JSON object (the payload parsed when it is JSON, else as text)."""
    text = payload.decode(errors="replace")
    try:
        body: Any = json.loads(text)
    except json.JSONDecodeError:
        body = text
    return json.dumps({"topic": topic, "retain": retain, "payload": body}, ensure_ascii=False)


_BACKOFF_MIN_S = 0.25
_BACKOFF_MAX_S = 5.0
# CONNACK refusals that retrying cannot fix: protocol, client id, bad credentials, not authorised
# (MQTT 3.1.1 return codes and their MQTT 5 reason codes).
_PERMANENT = frozenset({1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8C})


def _notice(text: str) -> None:
    print(f"emotrack listen: {text}", file=sys.stderr, flush=True)


def _permanent(exc: BaseException) -> bool:
    from aiomqtt.exceptions import MqttConnectError

    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    return isinstance(exc, MqttConnectError) and isinstance(code, int) and code in _PERMANENT


class Connection:
    """``messages`` yields every message on ``<prefix>/#`` across broker outages.

    A broker that is not up yet, restarts, or goes away with the daemon (the embedded one) is
    waited for: one line on stderr when the link is lost, one when it is back, and reconnection
    with exponential backoff in between. Only a refusal that retrying cannot fix (bad credentials,
    not authorised) ends listening, as a ListenError.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.connected_once = False
        self.last_error = ""
        self.daemon_status = ""  # the last payload on <prefix>/status: "online" / "offline"

    @property
    def messages(self) -> AsyncGenerator[Any, None]:
        return self._messages()

    async def _messages(self) -> AsyncGenerator[Any, None]:
        import aiomqtt

        from streamer.sinks.mqtt import describe_error

        ep = self.cfg.endpoint()
        status_topic = f"{self.cfg.base}/status"
        delay, waiting, closing = _BACKOFF_MIN_S, False, False
        while True:
            connected = False
            try:
                async with self.cfg.make_client(identifier=f"emotrack-listen-{os.getpid()}") as client:
                    await client.subscribe(f"{self.cfg.base}/#", qos=1)
                    connected, self.connected_once, delay = True, True, _BACKOFF_MIN_S
                    if waiting:
                        _notice(f"connected to MQTT broker at {ep}")
                        waiting = False
                    async for m in client.messages:
                        if m.topic.value == status_topic:
                            self.daemon_status = bytes(m.payload or b"").decode(errors="replace").strip()
                        try:
                            yield m
                        except GeneratorExit:  # the reader is done (--count): leave, do not retry
                            closing = True
                            raise
            except aiomqtt.MqttError as exc:
                if closing:
                    return
                self.last_error = describe_error(exc)
                if _permanent(exc):
                    raise ListenError(
                        f"MQTT broker at {ep} refused the connection: {self.last_error}"
                    ) from None
                if not waiting:
                    _notice(self._waiting_text(ep, connected))
                    waiting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _waiting_text(self, ep: Any, was_connected: bool) -> str:
        retry = "retrying until it answers (Ctrl-C to stop)"
        if not was_connected:
            return f"waiting for the MQTT broker at {ep} ({self.last_error}); {retry}"
        if self.daemon_status == "offline":  # an embedded broker stops with its daemon
            return f"the daemon went offline and the MQTT broker at {ep} closed; {retry}"
        return f"lost the MQTT broker at {ep} ({self.last_error}); {retry}"


def _line(args: argparse.Namespace, m: Any, base: str) -> str:
    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
    topic = m.topic.value
    if getattr(args, "json", False):
        return json_line(topic, payload, bool(m.retain))
    if args.raw:
        return f"{topic} {payload.decode(errors='replace')}"
    return readable(topic, payload, base)


def _config(args: argparse.Namespace) -> Any:
    from streamer.sinks.mqtt_config import MqttConfig

    return MqttConfig(url=args.mqtt if "://" in args.mqtt else f"mqtt://{args.mqtt}", prefix=args.prefix)


async def listen(args: argparse.Namespace, conn: Connection | None = None) -> int:
    """Print (or draw) messages until --count, across broker outages; ListenError on a refusal."""
    conn = conn or Connection(_config(args))
    cfg = conn.cfg
    if getattr(args, "live", False):  # streamer.liveview: the rich table instead of lines
        from streamer.liveview import LiveModel, live

        return await live(conn, LiveModel(cfg.base), count=args.count)
    seen = 0
    async with contextlib.aclosing(conn.messages) as messages:
        async for m in messages:
            print(_line(args, m, cfg.base), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "live", False):
        from streamer.liveview import require_rich

        require_rich()
    cfg = _config(args)
    conn = Connection(cfg)

    async def main() -> int:
        if args.timeout > 0:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(listen(args, conn), args.timeout)
            if not conn.connected_once:  # waited the whole time for a broker that never answered
                reason = conn.last_error or "no answer"
                raise ListenError(
                    f"cannot reach MQTT broker at {cfg.endpoint()} within {args.timeout:g}s: {reason}"
                )
            return 0
        return await listen(args, conn)

    try:
        return asyncio.run(main())
    except ListenError as exc:
        print(f"emotrack: error: {exc}", file=sys.stderr)
        return 1
