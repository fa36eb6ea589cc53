"""`python -m training train|evaluate|export|build-trt|baseline` (also `emotrack <cmd>`).

Each command has `add_<cmd>_parser(subparsers)` and `run_<cmd>(args) -> int`, which `streamer/commands/`
wraps. User-caused failures print one line `emotrack: error: ...` and return 1 (2 for bad flags).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

PROG = "emotrack"
TRAIN_KEYS = {"epochs", "lr", "weight_decay", "batch_size", "seed", "max_steps", "warmup_steps",
              "label_smoothing", "vad_weight", "vad_loss", "grad_clip", "balanced", "samples_per_epoch",
              "threads", "corpus_weights", "select_labels", "average_last",
              "mixup", "speaker_adversary"}  # fmt: skip
DATA_KEYS = {"corpora", "labels", "merge_calm", "split", "fraction", "crop_s", "augment", "augment_options"}


class ConfigFileError(Exception):
    """A training TOML that cannot be read or has unknown keys."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from engines.errors import EngineError
    from training.checkpoints import CheckpointError
    from training.data.augment import AugmentConfigError
    from training.data.corpora import CorpusError
    from training.data.dataset import AudioLoadError
    from training.data.splits import SplitError
    from training.models.base import ModelError

    return (ConfigFileError, EngineError, CheckpointError, CorpusError, AudioLoadError, SplitError,
            ModelError, AugmentConfigError, FileNotFoundError, PermissionError)  # fmt: skip


def fail(message: str, code: int = 1) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def read_toml(path: Path | None) -> dict[str, Any]:
    """The training config: top-level `model`, `out`; tables [model_config], [data], [train], [engine]."""
    if path is None:
        return {}
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigFileError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"config file {path} is not valid TOML: {e}") from None
    allowed = {"model", "out", "model_config", "data", "train", "engine"}
    bad = sorted(set(doc) - allowed)
    bad += [f"data.{k}" for k in sorted(set(doc.get("data", {})) - DATA_KEYS)]
    bad += [f"train.{k}" for k in sorted(set(doc.get("train", {})) - TRAIN_KEYS)]
    if bad:
        raise ConfigFileError(f"config file {path}: unknown key(s) {', '.join(bad)}")
    return doc


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    text = "train an emotion model on speech corpora and export it as an engine"
    p: argparse.ArgumentParser = sub.add_parser("train", help=text, description=text)
    p.add_argument("config", nargs="?", type=Path, help="TOML config (flags override it)")
    p.add_argument("--model", help="realtime | ca-ser | hump-cat | vad-fusion | wavfusion (default realtime)")
    p.add_argument("--corpus", action="append", metavar="NAME=PATH", help="corpus to train on; repeatable")
    p.add_argument(
        "--split",
        help="default | devfold:K:FOLD | devall | kfold:K:FOLD | speakers=ID,ID (default: default)",
    )
    p.add_argument("--labels", help="label set: 4, all or comma-separated common labels (default 4)")
    p.add_argument(
        "--no-merge-calm", action="store_true", help="drop RAVDESS calm instead of calling it neutral"
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--samples-per-epoch", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int)
    p.add_argument("--fraction", type=float, help="train on this fraction of the training speakers")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--out", type=Path, help="run directory: checkpoints, config.json, metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last")
    p.add_argument("--backbone", type=Path, help="pretrained backbone path (models that need one)")
    p.add_argument("--init", type=Path, help="initial weights from a checkpoint (non-strict)")
    p.add_argument("--engine-out", type=Path, help="engine directory (default OUT/engine)")
    p.add_argument("--engine-name", help="engine.json name (default emotrack-<model>)")
    p.add_argument("--engine-version", help="engine.json version (default 0.1.0)")
    p.add_argument("--no-export", action="store_true", help="skip the engine export")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (logs one line per epoch)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object with the result instead of text"
    )
    return p


def _train_options(args: argparse.Namespace) -> tuple[str, dict[str, Any], Any, Any, dict[str, Any]]:
    from training.pipeline import DataOptions
    from training.trainer import TrainConfig

    doc = read_toml(args.config)
    data = DataOptions(**doc.get("data", {}))
    if args.corpus:
        data.corpora = list(args.corpus)
    for flag, key in (("split", "split"), ("labels", "labels"), ("fraction", "fraction")):
        if getattr(args, flag) is not None:
            setattr(data, key, getattr(args, flag))
    data.merge_calm = data.merge_calm and not args.no_merge_calm
    data.augment = data.augment and not args.no_augment
    out = args.out or (Path(doc["out"]) if "out" in doc else None)
    if out is None:
        raise ConfigFileError("no output directory: pass --out DIR (or set out = '...' in the config)")
    cfg = TrainConfig(**doc.get("train", {}), out_dir=out, resume=args.resume)
    for flag in ("epochs", "batch_size", "lr", "max_steps", "samples_per_epoch", "threads", "seed"):
        if getattr(args, flag) is not None:
            setattr(cfg, flag, getattr(args, flag))
    cfg.progress = not args.no_progress
    model = args.model or doc.get("model", "realtime")
    return model, dict(doc.get("model_config", {})), data, cfg, dict(doc.get("engine", {}))


def run_train(args: argparse.Namespace) -> int:
    """Train, evaluate the validation-chosen checkpoint on held-out speakers, export + parity-check."""
    from training.pipeline import (
        LICENCE_NOTE,
        corpus_root,
        default_engine_metrics,
        describe_training_data,
        export_model_engine,
        git_revision,
        run_training,
        write_provenance_metrics,
    )

    try:
        model_name, model_cfg, data, cfg, engine_opts = _train_options(args)
        with _quiet_stdout(args.json):
            model, result, metrics = run_training(
                model_name, model_cfg, data, cfg, backbone=args.backbone, init=args.init
            )
        summary: dict[str, Any] = {
            "run_dir": str(cfg.out_dir),
            "best_epoch": result.best_epoch + 1,
            "val": _headline(metrics["val"]),
            "test": _headline(metrics["test"]) if "test" in metrics else None,
            "engine_dir": None,
            "parity": None,
        }
        if not args.json:
            print(f"best epoch {summary['best_epoch']}: validation {json.dumps(summary['val'])}")
            if summary["test"] is not None:
                print(f"held-out test speakers: {json.dumps(summary['test'])}")
        if args.no_export:
            if args.json:
                print(json.dumps(summary))
            return 0
        engine_dir = args.engine_out or Path(cfg.out_dir) / "engine"
        provenance = {
            "training_data": describe_training_data(data, cfg.extra["speakers"]),
            "code_version": git_revision(),
            "license": engine_opts.get("license", LICENCE_NOTE),
            "metrics": {"val": _headline(metrics["val"]), "test": _headline(metrics.get("test", {}))},
            "command": command_line(args),
        }
        with _quiet_stdout(args.json):
            _, parity = export_model_engine(
                model, engine_dir,
                name=args.engine_name or engine_opts.get("name", f"emotrack-{model_name}"),
                version=args.engine_version or engine_opts.get("version", "0.1.0"),
                provenance=provenance,
                window_s=float(engine_opts.get("window_s", 2.0)),
                hop_s=float(engine_opts.get("hop_s", 0.5)),
            )  # fmt: skip
        ravdess = corpus_root(data, "ravdess")
        if data.split == "default" and ravdess is not None and parity.passed:
            with _quiet_stdout(args.json):
                figures = default_engine_metrics(engine_dir, ravdess, metrics["val"])
            write_provenance_metrics(engine_dir, figures)
            summary["engine_ravdess_19_24"] = figures
            if not args.json:
                print(f"engine on RAVDESS actors 19-24: UA {figures['ua_4']:.4f}  WA {figures['wa_4']:.4f}")
    except _user_errors() as e:
        return fail(str(e))
    except TypeError as e:  # unknown keyword in a config table
        return fail(f"bad training configuration: {e}")
    summary.update(engine_dir=str(engine_dir), parity=parity_dict(parity))
    print(json.dumps(summary) if args.json else f"engine: {engine_dir}  {parity}")
    return 0 if parity.passed else 1


def _quiet_stdout(json_mode: bool) -> contextlib.AbstractContextManager[Any]:
    """With --json, stdout carries only the JSON: library chatter (torch.onnx prints) goes to stderr."""
    return contextlib.redirect_stdout(sys.stderr) if json_mode else contextlib.nullcontext()


def parity_dict(parity: Any) -> dict[str, Any]:
    """A ParityReport as JSON: worst |torch - ORT| per output, the tolerance and the verdict."""
    return {
        "max_abs_diff": {k: float(v) for k, v in parity.max_abs_diff.items()},
        "max_scaled_diff": {k: float(v) for k, v in parity.max_scaled_diff.items()},
        "tolerance": float(parity.tolerance),
        "tolerance_rule": "|torch - ORT| <= tolerance * (1 + |torch|)",
        "cases": len(parity.cases),
        "passed": bool(parity.passed),
    }


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "n",
        "ua",
        "wa",
        "macro_f1",
        "sub_ua",
        "sub_wa",
        "ccc_valence",
        "ccc_arousal",
        "ccc_dominance",
        "ccc_mean",
    )
    return {k: (round(m[k], 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def command_line(args: argparse.Namespace) -> str:
    """The exact command that ran (for engine provenance)."""
    argv = getattr(args, "argv", None)
    prog = getattr(args, "prog_name", PROG)
    return f"{prog} {shlex.join(sys.argv[1:] if argv is None else argv)}"


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    text = "export a training checkpoint as an engine (model.onnx + engine.json) and check parity"
    p: argparse.ArgumentParser = sub.add_parser("export", help=text, description=text)
    p.add_argument("checkpoint", type=Path, help="run directory (uses best) or checkpoint file/stem")
    p.add_argument("--out", type=Path, required=True, help="engine directory to write")
    p.add_argument("--name", default=None, help="engine name (default emotrack-<model>)")
    p.add_argument("--version", dest="engine_version", default="0.1.0")
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--hop-s", type=float, default=0.5)
    p.add_argument("--license", default=None, help="licence text for engine.json")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object with the result instead of text"
    )
    return p


def run_export(args: argparse.Namespace) -> int:
    from training.checkpoints import load_checkpoint_model, read_checkpoint_meta, resolve_checkpoint
    from training.pipeline import LICENCE_NOTE, export_model_engine, git_revision

    try:
        stem = resolve_checkpoint(args.checkpoint)
        meta = read_checkpoint_meta(stem)
        model = load_checkpoint_model(stem)
        name = meta.get("model", {}).get("name", "model")
        data = meta.get("train_config", {}).get("extra", {}).get("data", {})
        provenance = {
            "training_data": ", ".join(data.get("corpora", [])),
            "code_version": git_revision(),
            "license": args.license or LICENCE_NOTE,
            "metrics": {"val": _headline(meta.get("metrics", {}))},
            "command": command_line(args),
        }
        with _quiet_stdout(args.json):
            engine_dir, parity = export_model_engine(
                model, args.out, name=args.name or f"emotrack-{name}", version=args.engine_version,
                provenance=provenance, window_s=args.window_s, hop_s=args.hop_s,
            )  # fmt: skip
    except _user_errors() as e:
        return fail(str(e))
    if args.json:
        print(json.dumps({"engine_dir": str(engine_dir), "parity": parity_dict(parity)}))
    else:
        print(f"engine: {engine_dir}  {parity}")
    return 0 if parity.passed else 1


def add_build_trt_parser(sub: Any) -> argparse.ArgumentParser:
    text = "build TensorRT plans for an engine on this machine's NVIDIA GPU(s)"
    p: argparse.ArgumentParser = sub.add_parser("build-trt", help=text, description=text)
    p.add_argument("engine", type=Path, help="engine directory")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--opt-batch", type=int, default=8)
    p.add_argument(
        "--json", action="store_true", help="print one JSON object with the result instead of text"
    )
    return p


def run_build_trt(args: argparse.Namespace) -> int:
    from engines.errors import EngineError
    from training.build_trt import build_plans

    try:
        plans = build_plans(args.engine, opt_batch=args.opt_batch, max_batch=args.max_batch)
    except EngineError as e:
        return fail(str(e))
    if args.json:  # success only: failures stay one line on stderr with a non-zero exit
        print(json.dumps({"engine_dir": str(args.engine), "plans": [str(p) for p in plans]}))
        return 0
    for plan in plans:
        print(f"plan: {plan}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from training import commands

    parser = argparse.ArgumentParser(prog="python -m training", description="emotrack training tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, run in (
        (add_train_parser, run_train),
        (commands.add_evaluate_parser, commands.run_evaluate),
        (add_export_parser, run_export),
        (add_build_trt_parser, run_build_trt),
        (commands.add_baseline_parser, commands.run_baseline),
    ):
        add(sub).set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.prog_name = "python -m training"
    return int(args.func(args))
