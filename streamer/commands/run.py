"""``emotrack run``: the daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

HELP = "run the emotion tracking daemon"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "run",
        help=HELP,
        description=f"{HELP}. Precedence: defaults < config file < EMOTRACK_* environment < flags.",
    )
    p.add_argument("-c", "--config", type=Path, help="TOML config file (default: $EMOTRACK_CONFIG if set)")
    p.add_argument(
        "--source",
        action="append",
        metavar="SPEC",
        help="file:PATH | mic:NAME|INDEX | stdin | tcp://HOST:PORT | unix:PATH, options ?id=..&split=1 "
        "(repeatable; replaces the config's sources)",
    )
    add_daemon_options(p, stdout_default=None)
    p.add_argument("--realtime", action="store_true", help="pace file sources at real time")
    p.add_argument(
        "--stats-interval", type=float, metavar="S", help="seconds between <prefix>/stats messages"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config key (repeatable), e.g. --set inference.max_batch=16",
    )
    return p


def add_daemon_options(p: argparse.ArgumentParser, *, stdout_default: str | None) -> None:
    """The engine, MQTT, log and stdout flags every command that runs the daemon takes (``flags_table``
    reads them back)."""
    p.add_argument(
        "--engine", type=Path, metavar="DIR", help="engine directory or bundled name: default | fast"
    )
    p.add_argument(
        "--backend",
        choices=["auto", "tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu"],
        help="engine backend",
    )
    p.add_argument("--threads", type=int, metavar="N", help="engine intra-op threads")
    p.add_argument(
        "--mqtt", metavar="URL", help="broker mqtt[s]://[user:pass@]host[:port] (default: embedded)"
    )
    p.add_argument("--prefix", help="MQTT topic prefix (default: emotrack)")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="embedded broker port (0 = any free port)")
    p.add_argument("--log-dir", type=Path, metavar="DIR", help="conversation log directory")
    p.add_argument("--no-logs", action="store_true", help="do not write conversation logs")
    p.add_argument(
        "--stdout", choices=["off", "text", "json"], default=stdout_default, help="records on stdout"
    )


def flags_table(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as a TOML-shaped table (the last layer of the configuration)."""
    t: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            t.setdefault(section, {})[key] = value

    put("engine", "path", None if args.engine is None else str(args.engine))
    put("engine", "backend", args.backend)
    put("engine", "intra_op_threads", args.threads)
    put("mqtt", "url", args.mqtt)
    put("mqtt", "prefix", args.prefix)
    put("daemon", "broker_port", args.broker_port)
    put("daemon", "stats_interval_s", args.stats_interval)
    put("logs", "directory", None if args.log_dir is None else str(args.log_dir))
    if args.no_logs:
        put("logs", "enabled", False)
    if args.realtime:
        put("daemon", "realtime", True)
    table: dict[str, Any] = dict(t)
    if args.source:
        table["sources"] = list(args.source)
    if args.stdout is not None:
        table["stdout"] = args.stdout
    return table


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    """``--set SECTION.KEY=VALUE`` flags as (key, value) pairs; shared by run, demo and replay."""
    from streamer.cli import UsageError

    overrides = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides.append((key.strip(), value))
    return overrides


def load_from_args(args: argparse.Namespace) -> Any:
    from streamer.config import load_config

    overrides = parse_overrides(args.set)
    env_path = os.environ.get("EMOTRACK_CONFIG")
    path = args.config if args.config is not None else (Path(env_path) if env_path else None)
    return load_config(path, overrides=overrides, flags=flags_table(args))


def run(args: argparse.Namespace) -> int:
    from streamer.cli import UsageError
    from streamer.resolved import check_config
    from streamer.service import serve

    cfg = load_from_args(args)
    if not cfg.sources:
        raise UsageError("no sources: pass --source SPEC or list [[sources]] in the config file")
    check_config(cfg)  # what `emotrack config --check` checks, before the engine is loaded
    daemon = asyncio.run(serve(cfg))
    return 0 if daemon.batcher.stats.failed == 0 else 1
