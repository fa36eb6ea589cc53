"""An engine's row of the leave-one-corpus-out table (docs/engine-2.0-baselines.md): `emotrack evaluate` on
each corpus's four-class clips (RAVDESS actors 1-18 only; 19-24 are the test of record), per clip, then the
four-class UA and the V/A/D CCC against the category coordinates of each corpus and the mean UA.

    python scripts/engine_loco_row.py ENGINE CORPORA_DIR OUT_DIR [--seen ravdess,tess]

`--seen` names the corpora the engine was trained on (not zero-shot for it); writes OUT_DIR/loco.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CORPORA = ("ravdess", "tess", "ased", "nemo")
SPLIT = {"ravdess": "speakers=1-18"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("engine", type=Path)
    p.add_argument("corpora", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seen", default="", help="comma-separated corpora the engine was trained on")
    p.add_argument("--emotrack", default="emotrack", help="the emotrack command (default: on PATH)")
    args = p.parse_args(argv)
    seen = {s for s in args.seen.split(",") if s}
    row: dict[str, dict[str, Any]] = {}
    commands = []
    for name in CORPORA:
        cmd = [args.emotrack, "evaluate", "--engine", str(args.engine), "--corpus"]
        cmd += [f"{name}={args.corpora / name}", "--split", SPLIT.get(name, "all"), "--labels", "4"]
        cmd += ["--labelled-only", "--no-progress", "--out", str(args.out / name)]
        commands.append(" ".join(cmd))
        print(commands[-1], flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        m = json.loads((args.out / name / "metrics.json").read_text())
        row[name] = {
            "ua": m["ua"],
            "ccc": m["ccc"],
            "n": m["n"],
            "speakers": len(m["speakers"]),
            "zero_shot": name not in seen,
        }
    summary = {
        "engine": str(args.engine),
        "protocol": "per clip, four-class UA (neutral, happy, sad, angry; only those clips), V/A/D CCC "
        "against the category coordinates on the same clips; RAVDESS actors 1-18 only",
        "held_out": row,
        "mean_ua": sum(float(r["ua"]) for r in row.values()) / len(row),
        "commands": commands,
    }
    (args.out / "loco.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        json.dumps({k: (v["ua"], v["zero_shot"]) for k, v in row.items()}), f"mean {summary['mean_ua']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
