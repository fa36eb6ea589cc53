"""CLI of `emotrack evaluate-track` (argparse only at import: the training extra loads when it runs)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

PROG = "emotrack"
DEFAULT_ENGINES = ["default:ravdess"]  # the default engine trained on the other three corpora


def add_parser(sub: Any) -> argparse.ArgumentParser:
    text = "score the published track on joined streams of unseen speakers (mixed, held, mostly neutral)"
    p: argparse.ArgumentParser = sub.add_parser("evaluate-track", help=text, description=text)
    p.add_argument(
        "--corpora", type=Path, required=True, metavar="DIR", help="folder of ravdess/ tess/ ased/ nemo/"
    )
    p.add_argument(
        "--engine",
        action="append",
        metavar="DIR:CORPUS[,CORPUS]",
        help="an engine and the corpora it never trained on (DIR 'default': the bundled engine); repeatable, "
        f"each corpus once (default: {DEFAULT_ENGINES[0]})",
    )
    p.add_argument("--part", choices=("dev", "test"), default="test", help="speaker sample (default: test)")
    p.add_argument("--work", type=Path, required=True, metavar="DIR", help="daemon logs and cache (reused)")
    p.add_argument("--seed", type=int, default=0, help="stream plans and speaker sample (default: 0)")
    p.add_argument(
        "--config", type=Path, default=None, metavar="TOML", help="[smoothing]/[centring] from this file"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a smoothing.* or centring.* setting (over the defaults/--config); repeatable",
    )
    p.add_argument("--grid", action="store_true", help="every candidate of docs/track.md and the rule's pick")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="figures as JSON")
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="--grid: settings scored at once (default 1)"
    )
    return p


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def configured(config: Path | None, sets: list[str]) -> Any:
    """The Setting the daemon would run with: defaults < --config < --set (smoothing/centring only)."""
    from streamer.config import load_config
    from streamer.configload import ConfigError
    from training.track_eval import Setting

    pairs = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key.split(".")[0] not in ("smoothing", "centring"):
            raise ConfigError(f"--set {item!r}: expected smoothing.KEY=VALUE or centring.KEY=VALUE")
        pairs.append((key.strip(), value))
    cfg = load_config(config, environ={}, overrides=pairs)
    name = "configured" + ("" if not sets else " (" + ", ".join(sets) + ")")
    return Setting(name, cfg.smoothing, cfg.centring)


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    if x == "inf" or (isinstance(x, float) and math.isinf(x)):
        return "inf"
    return format(x, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "setting | kind | clips | UA raw / published / summary | lag median / p90 s (raw) | followed | "
        "switches/min (raw)"
    )
    lines = [head]
    for r in rows:
        for kind, f in r["kinds"].items():
            cells = [
                r["setting"],
                kind,
                str(f["n_clips"]),
                f"{_fmt(f['ua_raw'])} / {_fmt(f['ua_published'])} / {_fmt(f['ua_summary'])}",
                f"{_fmt(f['lag_median_s'], '.2f')} / {_fmt(f['lag_p90_s'], '.2f')} "
                f"({_fmt(f['raw_lag_median_s'], '.2f')})",
                _fmt(f["followed"], ".2f"),
                f"{_fmt(f['switches_per_min'], '.1f')} ({_fmt(f['raw_switches_per_min'], '.1f')})",
            ]
            lines.append(" | ".join(cells))
    return "\n".join(lines)


_WORKER: dict[str, Any] = {}  # a forked worker's copy of the streams (set by its initializer)


def _init_worker(streams: Any) -> None:
    _WORKER["streams"] = streams


def _score_one(setting: Any) -> dict[str, Any]:
    from training.track_eval import score

    return score(_WORKER["streams"], setting)


def score_all(streams: Any, settings: list[Any], jobs: int) -> list[dict[str, Any]]:
    """Every setting's figures, in order; ``jobs`` > 1 scores them in forked processes (the streams are
    inherited, not pickled)."""
    from training.track_eval import score

    if jobs <= 1:
        return [score(streams, s) for s in settings]
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(streams,)) as pool:
        return pool.map(_score_one, settings, chunksize=4)


def run(args: argparse.Namespace) -> int:
    from streamer.configload import ConfigError
    from training.data.corpora import CorpusError
    from training.data.dataset import AudioLoadError
    from training.track_eval import TrackEvalError, build, dropped, load, parse_engine_pairs, score

    try:  # bad flags: exit 2
        setting = configured(args.config, args.set)
        jobs = parse_engine_pairs(args.engine or DEFAULT_ENGINES)
    except (ConfigError, ValueError, TrackEvalError) as e:
        return _fail(str(e), 2)
    try:
        index = build(args.corpora, jobs, args.part, args.work, args.seed,
                      log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
        streams = load(index)
        if args.grid:
            from training.track_tune import candidates, pick

            rows = score_all(streams, candidates(), args.jobs)
            chosen = pick(rows)
        else:
            rows, chosen = [score(streams, setting)], None
    except (ConfigError, ValueError, TrackEvalError, CorpusError, AudioLoadError, FileNotFoundError) as e:
        return _fail(str(e), 1)
    lost = dropped(streams)
    print(table(rows))
    if lost:
        print(f"warning: {lost} windows were dropped while recording", file=sys.stderr)
    if chosen is not None:
        print(f"rule: {chosen}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"part": args.part, "engines": args.engine or DEFAULT_ENGINES, "dropped_windows": lost,
               "rows": rows, "pick": chosen}  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0
