"""``emotrack config``: print every key with its default, or check a config file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "print the default configuration or check a config file"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("config", help=HELP, description=HELP)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--defaults", action="store_true", help="print every key with its default (TOML)")
    g.add_argument("--check", type=Path, metavar="FILE", help="load FILE (and the environment) and report")
    return p


def run(args: argparse.Namespace) -> int:
    from streamer.config import defaults_toml, load_config

    if args.defaults:
        print(defaults_toml(), end="")
        return 0
    cfg = load_config(args.check)
    print(
        f"{args.check}: ok ({len(cfg.sources)} source(s), stdout={cfg.stdout}, "
        f"mqtt={cfg.mqtt.url or cfg.mqtt.host or 'embedded'})"
    )
    return 0
