"""``emotrack replay``: re-score (audio) or re-smooth (log) a recorded conversation into a new log."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

HELP = "re-score or re-smooth a recorded conversation (audio file or log) into a new log"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help=HELP,
        description=f"{HELP}. Audio goes through the daemon's VAD, windows, engine and smoothing; a log "
        "is re-smoothed from its raw scores, or re-scored from its source audio with --engine.",
    )
    p.add_argument("input", type=Path, metavar="LOG_OR_AUDIO", help="a conversation log (.jsonl) or audio")
    p.add_argument("--out", type=Path, required=True, metavar="LOGDIR", help="directory for the new log")
    p.add_argument("--engine", type=Path, metavar="DIR", help="engine directory (re-score; default: bundled)")
    p.add_argument("--backend", default=None, help="engine backend (auto, onnxruntime-cpu, ...)")
    p.add_argument("-c", "--config", type=Path, help="TOML config (vad/windows/inference/smoothing sections)")
    p.add_argument("--stream-id", metavar="ID", help="stream id of the new log (default: the original)")
    g = p.add_argument_group("smoothing (default: the config's [smoothing])")
    g.add_argument("--tau", type=float, metavar="S", help="EMA time constant in audio seconds")
    g.add_argument("--alpha", type=float, help="fixed EMA weight per window (wins over --tau)")
    g.add_argument("--margin", type=float, help="lead a new label needs before it is published")
    g.add_argument("--min-switch", type=float, metavar="S", help="audio seconds the lead must last")
    g.add_argument("--silence", choices=["hold", "decay"], help="state policy in pauses")
    g.add_argument("--silence-tau", type=float, metavar="S", help="decay time constant in pauses")
    c = p.add_argument_group("centring (default: the config's [centring])")
    c.add_argument("--no-centring", action="store_true", help="no per-stream centring of the scores")
    c.add_argument(
        "--centring-strength", type=float, metavar="X", help="fraction of the offset removed, 0..1"
    )
    c.add_argument(
        "--centring-warmup", type=float, metavar="S", help="speech seconds the strength ramps over"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config key (repeatable), e.g. --set centring.enabled=false; the flags above win",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per log written")
    return p


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    smoothing = {
        k: v
        for k, v in (
            ("tau_s", args.tau),
            ("alpha", args.alpha),
            ("margin", args.margin),
            ("min_switch_s", args.min_switch),
            ("silence", args.silence),
            ("silence_tau_s", args.silence_tau),
        )
        if v is not None
    }
    flags: dict[str, Any] = {"stdout": "off"}
    if smoothing:
        flags["smoothing"] = smoothing
    centring = {
        k: v
        for k, v in (
            ("enabled", False if args.no_centring else None),
            ("strength", args.centring_strength),
            ("warmup_s", args.centring_warmup),
        )
        if v is not None
    }
    if centring:
        flags["centring"] = centring
    engine: dict[str, Any] = {}
    if args.engine is not None:
        engine["path"] = str(args.engine)
    if args.backend is not None:
        engine["backend"] = args.backend
    if engine:
        flags["engine"] = engine
    return flags


def run(args: argparse.Namespace) -> int:
    from streamer.commands.run import parse_overrides
    from streamer.config import load_config
    from streamer.replay import is_log, replay

    overrides = parse_overrides(args.set)
    cfg = load_config(args.config, overrides=overrides, flags=_flags(args))
    rescore = args.engine is not None or not is_log(args.input)
    results = asyncio.run(replay(args.input, cfg, args.out, rescore=rescore, stream_id=args.stream_id))
    for r in results:
        if args.json:
            print(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            print(f"{r.stream}: {r.mode} {r.windows} window(s), {r.utterances} utterance(s) -> {r.log}")
    return 0
