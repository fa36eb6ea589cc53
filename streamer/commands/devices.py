"""``emotrack devices``: the PyAudio input devices a ``mic:NAME|INDEX`` source can open."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, is_dataclass
from typing import Any

HELP = "list microphone input devices (PyAudio)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("devices", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="one JSON object per device")
    return p


def _as_dict(dev: Any) -> dict[str, Any]:
    if is_dataclass(dev) and not isinstance(dev, type):
        return asdict(dev)
    if isinstance(dev, dict):
        return dict(dev)
    return {k: getattr(dev, k) for k in dir(dev) if not k.startswith("_") and not callable(getattr(dev, k))}


def run(args: argparse.Namespace) -> int:
    from streamer.sources.mic import list_devices

    devices = [_as_dict(d) for d in list_devices()]
    if args.json:
        for d in devices:
            print(json.dumps(d, default=str))
        return 0
    if not devices:
        print("no input devices found")
        return 0
    for d in devices:
        rate = d.get("default_rate")
        extra = [f"{d.get('max_input_channels', '?')} ch"] + (
            [f"{rate:g} Hz"] if isinstance(rate, float) else []
        )
        if d.get("is_default"):
            extra.append("default")
        print(f"{d.get('index', '?'):>3}  {d.get('name', '?')}  ({', '.join(extra)})")
    return 0
