"""``emotrack demo``: the daemon on synthetic calm and excited speech, looping until Ctrl-C.

What ``scripts/quickstart`` runs on a machine without a microphone, so ``emotrack listen`` in a
second terminal has a track to watch that visibly rises and falls with the speaker's arousal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from streamer.commands.run import add_daemon_options

HELP = "run the daemon on synthetic calm and excited speech (espeak-ng), looping until Ctrl-C"
STREAM = "demo"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help=HELP,
        description=f"{HELP}. Calm segments are slow, low and soft, excited ones fast, high and loud, "
        "in four voices; the daemon publishes them as stream 'demo' like any source.",
    )
    p.add_argument(
        "--loops", type=int, default=0, metavar="N", help="passes over the script (0 = until Ctrl-C)"
    )
    p.add_argument("--fast", action="store_true", help="do not pace in real time (measurements)")
    p.add_argument(
        "--score",
        action="store_true",
        help="at the end print one JSON line: mean arousal of the calm and excited segments (needs logs)",
    )
    p.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="where the speech is kept (default: <state dir>/demo)"
    )
    p.add_argument("-c", "--config", type=Path, help="TOML config file (its sources are replaced)")
    add_daemon_options(p, stdout_default="text")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="as for run")
    return p


def _run_args(args: argparse.Namespace, source: str) -> argparse.Namespace:
    """The flags as ``emotrack run`` would have them, with the demo as the one source."""
    return argparse.Namespace(
        config=args.config,
        source=[source],
        engine=args.engine,
        backend=args.backend,
        threads=args.threads,
        mqtt=args.mqtt,
        prefix=args.prefix,
        broker_port=args.broker_port,
        log_dir=args.log_dir,
        no_logs=args.no_logs,
        stdout=args.stdout,
        realtime=False,
        stats_interval=None,
        set=args.set,
    )


def _windows_since(log_dir: Path, t0: float) -> list[Any]:
    """The demo stream's window records from log files written since ``t0``."""
    from streamer.convlog import read_conversations

    d = log_dir / STREAM
    files = [f for f in d.glob("*.jsonl") if f.stat().st_mtime >= t0] if d.is_dir() else []
    if not files:
        return []
    return [w for c in read_conversations(files) if c.stream == STREAM for w in c.windows]


def run(args: argparse.Namespace) -> int:
    from streamer.cli import UsageError
    from streamer.commands.run import load_from_args
    from streamer.demo import score, synthesise
    from streamer.seqstore import state_directory
    from streamer.service import serve

    if args.loops < 0:
        raise UsageError(f"--loops {args.loops}: must be >= 0 (0 = until Ctrl-C)")
    if args.score and (args.no_logs or args.loops == 0):
        raise UsageError("--score needs logs and a bounded run (--loops N)")
    probe = load_from_args(_run_args(args, "stdin"))  # the configured state dir, before any synthesis
    cache = args.cache_dir or state_directory(probe.daemon.state_directory, os.environ) / "demo"
    audio = synthesise(cache, loops=max(args.loops, 1))
    opts = f"id={STREAM}" + ("" if args.fast else "&realtime=1") + ("&loop=1" if args.loops == 0 else "")
    cfg = load_from_args(_run_args(args, f"file:{audio.path}?{opts}"))
    until = "until Ctrl-C" if args.loops == 0 else f"{args.loops} time{'s' * (args.loops > 1)}"
    print(
        f"emotrack demo: calm and excited speech ({len(audio.segments)} segments, {audio.duration:.0f} s) "
        f"{until}; watch it with 'emotrack listen'",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.time() - 1.0  # file mtimes have coarse resolution on some filesystems
    daemon = asyncio.run(serve(cfg))
    if args.score:
        result = score(audio, _windows_since(cfg.log_directory(os.environ), t0))
        print(json.dumps(result.as_dict()), flush=True)
    return 0 if daemon.batcher.stats.failed == 0 else 1
