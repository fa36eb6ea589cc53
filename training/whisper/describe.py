"""Write an engine's measured figures into its engine.json: the test of record, scored from the audio by the
same evaluator the tests use, beside the selection's figures and the references. model.onnx is untouched,
so its checksum stands.

    python -m training.whisper.describe ENGINE_DIR CORPORA --report REPORT.json --candidates A.json [B.json]
        [--baselines BASELINES.json] [--cost COST.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.manifest import read_manifest, write_manifest

SELECTION = (
    "Rule fixed before any figure (docs/default-engine.md, '2.0.0: the rule', 16:41 UTC, and its "
    "amendment, 17:22 UTC): frozen Whisper-base encoder, depth L in 1-5, logistic-regression head C in "
    "{0.01, 0.1, 1}, clean or clean + one channel-augmented copy; the mean zero-shot leave-one-corpus-out "
    "four-class UA over RAVDESS (actors 1-18), TESS, ASED and nEMO decides (no held-out corpus below "
    "0.50); ties within 0.010 go to fewer blocks, larger C, clean data. Candidates were scored on int8 "
    "features; the chosen head was refitted on the fp32 graph that ships (the int8 form made a window's "
    "scores depend on its batch)."
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("engine", type=Path)
    p.add_argument("corpora", type=Path)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--candidates", type=Path, nargs="+", required=True)
    p.add_argument("--baselines", type=Path)
    p.add_argument("--cost", type=Path)
    args = p.parse_args(argv)
    from training.evaluate import evaluate_default_engine

    figures, reports = evaluate_default_engine(args.engine, args.corpora / "ravdess", threads=2)
    report = json.loads(args.report.read_text())
    candidates = [row for path in args.candidates for row in json.loads(path.read_text())]
    metrics: dict[str, Any] = {
        "test_set": "RAVDESS actors 19-24 (never used for training, tuning or selection), whole clips",
        **{k: figures[k] for k in ("ua_4", "wa_4", "n_4", "ua_all", "n_all")},
        "recall_4": reports["4"].recall,
        "ccc": reports["4"].ccc,
        "test_windowed": report["test_ravdess_19_24"],
        "leave_one_corpus_out": {
            "protocol": "train on three corpora, score the fourth per clip (its 2 s windows' mean log-probs)",
            "per_corpus": report["leave_one_corpus_out"],
            "mean_ua": report["loco_mean_ua"],
        },
        "selection": SELECTION,
        "candidates_int8": candidates,
    }
    if args.baselines:
        metrics["references"] = json.loads(args.baselines.read_text())
    if args.cost:
        metrics["cost"] = json.loads(args.cost.read_text())
    manifest = read_manifest(args.engine)
    write_manifest(args.engine, replace(manifest, provenance=replace(manifest.provenance, metrics=metrics)))
    print(json.dumps({k: metrics[k] for k in ("ua_4", "wa_4", "n_4", "ccc")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
