"""Choose the default engine among trained runs on validation speakers only, then export the choice.

`python -m training.engine_select RUN [RUN ...]` scores each run's best checkpoint, and their mean ensemble,
on the runs' validation speakers (the default split: RAVDESS actors 16-18) and never touches the test
speakers. Runs trained with `--split devfold:K:FOLD` (one per fold) are a cross-validation ensemble: each
member is scored on its own fold and the pooled out-of-fold figures (all of RAVDESS 1-18) stand for the
ensemble (`training.cv_ensemble`). `--export DIR` exports the named runs (one run, or several as one in-graph
`MeanEnsemble`) through the pipeline's export (parity check, sha256) with its PyTorch copy (`DIR/torch/`),
and, only if the validation UA reaches `--min-val-ua`, adds the held-out test figures (RAVDESS 19-24, the
shared evaluator), the selection rule, the baseline figures and the measured CPU cost per window to
engine.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.cv_ensemble import CVError, cv_members, describe_cv, load_runs, out_of_fold, run_data
from training.data.dataset import AudioDataset
from training.pipeline import load_data
from training.validation import validate


def validation_scores(runs: list[Path], select_labels: list[str] | None = None) -> dict[str, Any]:
    """Validation metrics of each run and of the ensemble of all of them (validation speakers only); for a
    CV ensemble, each member on its own fold and the pooled out-of-fold figures (under "ensemble")."""
    members = cv_members(runs)
    if members is not None:
        oof = out_of_fold(members)
        return {**oof["folds"], "ensemble": oof["pooled"]}
    split, labels = load_data(run_data(runs[0]), seed=0)
    val_ds = AudioDataset(split.val, labels, seed=0)
    out: dict[str, Any] = {"validation_speakers": sorted({u.speaker for u in split.val})}
    for r in runs:
        out[str(r)] = validate(load_runs([r]), val_ds, select_labels)
    if len(runs) > 1:
        out["ensemble"] = validate(load_runs(runs), val_ds, select_labels)
    return out


def cpu_ms_per_window(model_path: Path, batch: int, seconds: float = 2.0, repeats: int = 20) -> float:
    """Median ONNX Runtime CPU time (1 intra-op thread) per window at a given batch size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((batch, int(seconds * 16000)))).astype(np.float32)
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 / batch)


def export_choice(runs: list[Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export the chosen runs as an engine and record test figures, selection, baseline and CPU cost."""
    from engines.manifest import read_manifest
    from training.pipeline import (
        LICENCE_NOTE,
        corpus_root,
        default_engine_metrics,
        describe_training_data,
        export_model_engine,
        git_revision,
        write_provenance_metrics,
    )
    from training.torch_copy import save_torch_copy

    data = run_data(runs[0])
    split, _labels = load_data(data, seed=0)
    judged = args.validation_from or runs  # the runs whose validation figures stand for the engine
    members = cv_members(judged)
    if args.validation_from and members is None:
        raise SystemExit("engine_select: --validation-from needs cross-validation (devfold) runs")
    model = load_runs(runs)
    scores = validation_scores(judged)
    val = scores["ensemble" if len(judged) > 1 else str(judged[0])]
    texts = {
        "training_data": describe_training_data(data, split.speakers()),
        "validation_set": f"{data.split} split validation: {', '.join(split.speakers()['val'])}",
    }
    if members is not None:
        cv_texts = describe_cv(members, split.speakers(), run_data(judged[0]))
        texts = (
            cv_texts if not args.validation_from else {**texts, "validation_set": cv_texts["validation_set"]}
        )
    elif data.split == "default":
        texts["validation_set"] = "RAVDESS actors 16-18"
    four_class_ua = val.get("sub_ua", val["ua"])  # all-label runs: the four-class figure, as on test
    if args.min_val_ua is not None and four_class_ua < args.min_val_ua:
        raise SystemExit(
            f"engine_select: validation UA {four_class_ua:.4f} < --min-val-ua {args.min_val_ua}: "
            "not exported, test speakers not evaluated"
        )
    provenance = {
        "training_data": texts["training_data"],
        "code_version": git_revision(),
        "license": LICENCE_NOTE,
        "metrics": {},
        "command": args.command,
    }
    engine_dir, parity = export_model_engine(
        model, out, name=args.name, version=args.version, provenance=provenance, window_s=2.0, hop_s=0.5
    )
    if not parity.passed:
        raise SystemExit(f"engine_select: export parity failed: {parity}")
    save_torch_copy(model, engine_dir)
    ravdess = corpus_root(data, "ravdess")
    if ravdess is None:
        raise SystemExit("engine_select: the runs were not trained with a ravdess corpus")
    figures = default_engine_metrics(engine_dir, ravdess, val, texts["validation_set"])
    figures["selection"] = args.selection
    if args.min_val_ua is not None:
        figures["selection_threshold_val_ua"] = args.min_val_ua
    if args.baseline_from is not None:
        figures["baseline"] = read_manifest(args.baseline_from).provenance.metrics.get("baseline")
    figures["cpu_ms_per_2s_window"] = {
        "onnxruntime_cpu_1_thread_batch_32": round(cpu_ms_per_window(engine_dir / "model.onnx", 32), 2),
        "batch_1": round(cpu_ms_per_window(engine_dir / "model.onnx", 1), 2),
    }
    figures["members"] = [str(r) for r in runs]
    if args.validation_from:
        figures["validation_runs"] = [str(r) for r in args.validation_from]
    if members is not None:
        figures["validation_folds"] = {
            name: {k: fold.get(k) for k in ("actors", "n", "ua", "sub_ua", "wa")}
            for name, fold in scores.items()
            if name != "ensemble"
        }
    write_provenance_metrics(engine_dir, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.engine_select", description=__doc__)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (their best checkpoints)")
    p.add_argument("--export", type=Path, help="export these runs (an ensemble if several) to DIR")
    p.add_argument("--name", default="emotrack-rt")
    p.add_argument("--version", default="0.1.0", help="engine.json version (default 0.1.0)")
    p.add_argument("--selection", default="", help="the selection rule, for engine.json")
    p.add_argument("--command", default="", help="the full command chain, for engine.json")
    p.add_argument("--baseline-from", type=Path, help="engine dir whose recorded baseline figures to copy")
    p.add_argument(
        "--min-val-ua",
        type=float,
        help="the decision rule: export and evaluate on test only if the validation (pooled OOF) UA >= this",
    )
    p.add_argument(
        "--validation-from",
        type=Path,
        nargs="+",
        help="cross-validation runs of the same recipes whose pooled out-of-fold figures stand for the "
        "exported runs (members trained on all development actors, split devall, have no validation)",
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.export is None:
        try:
            scores = validation_scores(args.runs)
        except CVError as e:
            raise SystemExit(f"engine_select: {e}") from None
        keys = ("actors", "n", "ua", "sub_ua", "wa", "macro_f1", "ccc_mean")
        for name, m in scores.items():
            print(name, json.dumps(m if isinstance(m, list) else {k: m.get(k) for k in keys}))
        return 0
    try:
        figures = export_choice(args.runs, args.export, args)
    except CVError as e:
        raise SystemExit(f"engine_select: {e}") from None
    print(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
