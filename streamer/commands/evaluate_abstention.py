"""``emotrack evaluate-abstention``: false emotions on generated non-speech, speech kept on the corpora.

The measurement of docs/abstention.md: every window the segmenter cuts (gate off) would publish an
emotion; the figures are the share of them the window gate still lets through. No engine is needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

HELP = "measure the speech gate: false emotion rate on non-speech, speech windows kept per corpus"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("evaluate-abstention", help=HELP, description=HELP)
    p.add_argument("--corpora", type=Path, metavar="DIR", help="corpora root (ravdess, tess, ased, nemo)")
    p.add_argument("--split", choices=("dev", "test"), default="test", help="parameter set (default: test)")
    p.add_argument("--per-corpus", type=int, default=60, metavar="N", help="speech files per corpus")
    p.add_argument("-c", "--config", type=Path, help="TOML config whose [vad] window_gate_* are measured")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write abstention-<split>.json there")
    return p


def run(args: argparse.Namespace) -> int:
    from streamer.bench.abstention import CORPORA, figures, measure
    from streamer.config import load_config
    from streamer.errors import EmotrackError

    if args.per_corpus < 1:
        raise EmotrackError(f"--per-corpus must be >= 1 (got {args.per_corpus})")
    if args.corpora is not None:
        missing = [c for c in CORPORA if not (args.corpora / c).is_dir()]
        if missing:
            raise EmotrackError(f"corpora folder {args.corpora} lacks {', '.join(missing)}")
    vad = load_config(args.config).vad
    windows = measure(args.corpora, args.split, args.per_corpus, vad, vad.window_gate_voicing)
    t = vad.window_thresholds
    rows = figures(windows, t)
    for key, row in rows.items():
        if "kept_rate" in row:
            rate, in_span = 100 * row["kept_rate"], 100 * row["in_span_kept_rate"]
            print(
                f"{key:20s} kept {row['kept']:5d} of {row['windows']:5d} windows  {rate:6.2f} %"
                f"  (of the {row['in_span_windows']} within the speech span: {in_span:6.2f} %)"
            )
        else:
            rate = 100 * row["false_emotion_rate"]
            print(f"{key:20s} emotion on {row['emotion']:4d} of {row['windows']:5d} windows  {rate:6.2f} %")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result = {"split": args.split, "thresholds": dataclasses.asdict(t), "figures": rows}
        (args.out / f"abstention-{args.split}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0
