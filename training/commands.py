"""CLI pieces of `emotrack evaluate` and `emotrack baseline` (the training CLI wires them in).

Every user-caused failure (missing corpus, bad split or label set, unreadable engine or checkpoint) ends as
one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

PROG = "emotrack"


def _user_errors() -> tuple[type[BaseException], ...]:
    from engines.errors import EngineError
    from training.baseline import BaselineError
    from training.data.corpora import CorpusError
    from training.data.dataset import AudioLoadError
    from training.data.splits import SplitError
    from training.evaluate import EvalError

    found: list[type[BaseException]] = [
        EngineError,
        BaselineError,
        CorpusError,
        AudioLoadError,
        SplitError,
        EvalError,
        FileNotFoundError,
        PermissionError,
    ]
    try:
        from training.models.base import ModelError
        from training.trainer import CheckpointError

        found += [ModelError, CheckpointError]
    except ImportError:
        pass
    return tuple(found)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--corpus",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="corpus to read (ravdess, tess, ased, nemo, emodb, cremad, iemocap, msp-podcast, csv); "
        "repeatable",
    )


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`emotrack evaluate`: score an engine or a checkpoint on a speaker-independent test set."""
    text = "evaluate an engine or a training checkpoint on labelled corpora (UA, WA, F1, CCC)"
    p: argparse.ArgumentParser = subparsers.add_parser("evaluate", help=text, description=text)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--engine", type=Path, metavar="DIR", help="engine directory (model.onnx + engine.json)")
    src.add_argument(
        "--checkpoint", type=Path, metavar="DIR", help="training output dir (uses best) or checkpoint"
    )
    _add_corpus_args(p)
    p.add_argument(
        "--split",
        default="default-test",
        help="default-test (RAVDESS actors 19-24), default-val, all, or speakers=ID,... (RAVDESS actor "
        "numbers and ranges work: speakers=1-18) (default: default-test)",
    )
    p.add_argument("--labels", default="4", help="label set: 4, all, or comma-separated labels (default: 4)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="where metrics.json and confusion.png go"
    )
    p.add_argument("--backend", default="auto", help="engine backend (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--calm-as-neutral",
        action="store_true",
        help="count RAVDESS calm as neutral (for models trained with calm merged into neutral)",
    )
    p.add_argument(
        "--labelled-only",
        action="store_true",
        help="score only clips whose label is in --labels (so CCC covers the same clips as UA)",
    )
    p.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (shown on a terminal's stderr only)"
    )
    p.add_argument(
        "--streams",
        action="store_true",
        help="also replay each speaker's clips as one stream through the daemon's [centring] "
        "(as recorded and mostly neutral, seeded orders); figures go to metrics.json 'streams'",
    )
    p.add_argument(
        "--centring",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [centring] setting for --streams (default: the daemon's defaults); repeatable",
    )
    p.add_argument(
        "--stream-seeds", type=int, default=5, metavar="N", help="stream orders per mix (default: 5)"
    )
    return p


def _centring_config(settings: list[str]) -> Any:
    """The daemon's [centring] defaults with KEY=VALUE settings applied (ConfigError on a bad one)."""
    from streamer.centring import CentringConfig
    from streamer.configload import ConfigError, apply_text

    cfg = CentringConfig()
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--centring {item!r}: expected KEY=VALUE")
        cfg = apply_text(cfg, [key.strip()], value, f"centring.{key.strip()}")
    return cfg


def _stream_summary(streams: list[dict[str, Any]]) -> list[str]:
    return [
        f"streams, {s['mix']}: skipped ({s['skipped']})"
        if "skipped" in s
        else f"streams, {s['mix']}: UA per clip {s['ua_raw_mean']:.4f}, centred as a stream "
        f"{s['ua_centred_mean']:.4f} (seeds {min(s['ua_centred']):.4f}-{max(s['ua_centred']):.4f}, "
        f"{s['n_scored']} clips)"
        for s in streams
    ]


def _summary(report: Any) -> str:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    lines = [
        f"{report.source}: {report.n} utterances, labels {','.join(report.label_set)}",
        f"UA {f(report.ua)}  WA {f(report.wa)}  "
        f"macro-F1 {f(report.macro_f1)}  weighted-F1 {f(report.weighted_f1)}",
    ]
    if report.ccc:
        lines.append(
            "CCC " + "  ".join(f"{k} {v:.4f}" for k, v in report.ccc.items()) + f"  (n={report.n_vad})"
        )
    if report.unpredictable_labels:
        lines.append(f"labels the model cannot predict: {', '.join(report.unpredictable_labels)}")
    if report.streams:
        lines.extend(_stream_summary(report.streams))
    return "\n".join(lines)


def _stream_figures(report: Any, centring: Any, n_seeds: int) -> list[dict[str, Any]]:
    from training.evaluate import EvalError
    from training.stream_eval import MIXES, clips_from_predictions, stream_figures

    try:
        clips = clips_from_predictions(report.predictions, report.label_set)
    except ValueError as e:
        raise EvalError(f"{report.source}: {e}") from None
    out: list[dict[str, Any]] = []
    for mix in MIXES:
        try:
            figures = stream_figures(clips, centring, mix, range(n_seeds)).to_dict()
        except ValueError as e:  # e.g. a corpus without neutral speech has no mostly-neutral streams
            figures = {"mix": mix, "skipped": str(e)}
        out.append({**figures, "centring": dataclasses.asdict(centring)})
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    """Read corpora, select the split, evaluate, write the report; 0 on success."""
    from training.data.corpora import parse_corpus_specs
    from training.data.labels import resolve_label_set
    from training.data.splits import parse_split
    from training.evaluate import evaluate_checkpoint, evaluate_engine, merge_calm, write_report

    try:
        labels = resolve_label_set(args.labels)
    except ValueError as e:
        return _fail(f"--labels: {e}", 2)
    if args.threads is not None and args.threads < 0:
        return _fail("--threads must be >= 0", 2)
    if args.stream_seeds < 1:
        return _fail("--stream-seeds must be >= 1", 2)
    if args.centring and not args.streams:
        return _fail("--centring applies to --streams only (add --streams)", 2)
    try:
        centring = _centring_config(args.centring) if args.streams else None
    except ValueError as e:
        return _fail(str(e), 2)
    progress = not getattr(args, "no_progress", False)
    try:
        utts = parse_split(args.split, parse_corpus_specs(args.corpus))
        if args.calm_as_neutral:
            utts = merge_calm(utts)
        if args.labelled_only:
            utts = [u for u in utts if u.label in labels]
        if args.engine is not None:
            report = evaluate_engine(
                args.engine, utts, labels, backend=args.backend, threads=args.threads, progress=progress
            )
        else:
            report = evaluate_checkpoint(args.checkpoint, utts, labels, progress=progress)
        if centring is not None:
            report.streams = _stream_figures(report, centring, args.stream_seeds)
        path = write_report(report, args.out)
    except _user_errors() as e:
        return _fail(str(e), 1)
    if args.json:
        print(path.read_text(), end="")
    else:
        print(_summary(report))
        print(f"report: {path}")
    return 0


def add_baseline_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`emotrack baseline`: eGeMAPS + logistic regression on the default split."""
    text = "openSMILE eGeMAPS v02 + logistic regression baseline on the default split (RAVDESS 19-24 test)"
    p: argparse.ArgumentParser = subparsers.add_parser("baseline", help=text, description=text)
    _add_corpus_args(p)
    p.add_argument("--cache", type=Path, required=True, metavar="DIR", help="feature cache directory")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="reports go to DIR/4 and DIR/all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trim-db", type=float, default=None, help="trim silence quieter than peak-N dB first")
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="plain class weights instead of equal weight per corpus, speaker and class",
    )
    p.add_argument(
        "--speaker-norm",
        action="store_true",
        help="z-normalise each speaker's features over all their clips (test speakers too): the baseline "
        "given what a stream's centring has, and more",
    )
    p.add_argument(
        "--loco",
        action="store_true",
        help="leave-one-corpus-out instead: train on all corpora but one, score it per clip (four classes, "
        "silence-trimmed at 40 dB unless --trim-db, RAVDESS actors 19-24 never read); DIR/loco.json",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def _run_loco(args: argparse.Namespace) -> int:
    from training.baseline_loco import TRIM_DB, loco_table, run_loco
    from training.data.corpora import parse_corpus_specs
    from training.evaluate import write_report

    try:
        result = run_loco(
            parse_corpus_specs(args.corpus),
            args.cache,
            seed=args.seed,
            trim_db=TRIM_DB if args.trim_db is None else args.trim_db,
        )
        for name, report in result.reports.items():
            write_report(report, Path(args.out) / name)
        summary = result.to_dict()
        (Path(args.out) / "loco.json").write_text(json.dumps(summary, indent=2) + "\n")
    except _user_errors() as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"cannot write to {args.out}: {e.strerror}", 1)
    print(
        json.dumps(summary) if args.json else f"{loco_table(result)}\nreport: {Path(args.out) / 'loco.json'}"
    )
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    """Compute (or reuse cached) features, fit, report; 0 on success."""
    from training.baseline import run_baseline as baseline
    from training.data.corpora import parse_corpus_specs
    from training.evaluate import write_report

    if args.loco:
        if args.no_balance or args.speaker_norm:
            return _fail("--loco weights each corpus and class equally; drop --no-balance/--speaker-norm", 2)
        return _run_loco(args)
    try:
        result = baseline(
            parse_corpus_specs(args.corpus),
            args.cache,
            seed=args.seed,
            trim_db=args.trim_db,
            balance=not args.no_balance,
            speaker_norm=args.speaker_norm,
        )
        for name, report in result.reports.items():
            write_report(report, Path(args.out) / name)
        summary = {"figures": result.figures, "chosen_c": result.chosen_c, "cv_ua": result.cv_ua}
        (Path(args.out) / "baseline.json").write_text(json.dumps(summary, indent=2) + "\n")
    except _user_errors() as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"cannot write to {args.out}: {e.strerror}", 1)
    if args.json:
        print(json.dumps(summary))
    else:
        for report in result.reports.values():
            print(_summary(report))
        print(f"reports: {args.out}")
    return 0
