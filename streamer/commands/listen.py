"""``emotrack listen``: subscribe to a daemon's topics and print the streams readably (or raw JSON)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Any

HELP = "print the emotion streams a daemon publishes on MQTT"


class ListenError(Exception):
    """The broker is unreachable (one line naming host:port)."""


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


async def listen(args: argparse.Namespace) -> int:
    import aiomqtt

    from streamer.sinks.mqtt import describe_error
    from streamer.sinks.mqtt_config import MqttConfig

    cfg = MqttConfig(url=args.mqtt if "://" in args.mqtt else f"mqtt://{args.mqtt}", prefix=args.prefix)
    seen = 0
    try:
        async with cfg.make_client(identifier=f"emotrack-listen-{os.getpid()}") as client:
            await client.subscribe(f"{cfg.base}/#", qos=1)
            if getattr(args, "live", False):  # streamer.liveview: the rich table instead of lines
                from streamer.liveview import LiveModel, live

                return await live(client, LiveModel(cfg.base), count=args.count)
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                topic = m.topic.value
                if getattr(args, "json", False):
                    line = json_line(topic, payload, bool(m.retain))
                elif args.raw:
                    line = f"{topic} {payload.decode(errors='replace')}"
                else:
                    line = readable(topic, payload, cfg.base)
                print(line, flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    return 0
    except aiomqtt.MqttError as exc:
        raise ListenError(f"cannot reach MQTT broker at {cfg.endpoint()}: {describe_error(exc)}") from None
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "live", False):
        from streamer.liveview import require_rich

        require_rich()

    async def main() -> int:
        if args.timeout > 0:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(listen(args), args.timeout)
            return 0
        return await listen(args)

    try:
        return asyncio.run(main())
    except ListenError as exc:
        print(f"emotrack: error: {exc}", file=sys.stderr)
        return 1
