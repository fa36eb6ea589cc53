"""``emotrack config``: print every key with its default, or check a config file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

HELP = "print the default configuration or check a config file"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("config", help=HELP, description=HELP)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--defaults", action="store_true", help="print every key with its default (TOML)")
    g.add_argument("--check", type=Path, metavar="FILE", help="load FILE (and the environment) and report")
    p.add_argument("--json", action="store_true", help="the configuration as JSON (passwords redacted)")
    return p


def run(args: argparse.Namespace) -> int:
    from streamer.config import defaults_toml, load_config

    if args.defaults:
        if args.json:
            from streamer.config import EmotrackConfig

            print(config_json(EmotrackConfig()))
            return 0
        print(defaults_toml(), end="")
        return 0
    from streamer.resolved import check_config

    cfg = load_config(args.check)
    check_config(cfg)  # the same checks as `emotrack run`: windows against the engine, source specs
    if args.json:
        print(config_json(cfg))
        return 0
    print(
        f"{args.check}: ok ({len(cfg.sources)} source(s), stdout={cfg.stdout}, "
        f"mqtt={cfg.mqtt.display_url or cfg.mqtt.host or 'embedded'})"
    )
    return 0


def config_json(cfg: Any) -> str:
    """Every section and key as JSON; the MQTT password (field or in the URL) shown as ***."""
    d = dataclasses.asdict(cfg)
    mqtt = d.get("mqtt", {})
    if mqtt.get("password") is not None:
        mqtt["password"] = "***"
    if isinstance(mqtt.get("url"), str):
        mqtt["url"] = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", mqtt["url"])
    return json.dumps(d, default=str, indent=2)
