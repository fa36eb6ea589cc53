"""Figures of one chosen 2.0 setting: leave-one-corpus-out per corpus (UA and V/A/D CCC), then the test of
record, RAVDESS actors 19-24, with the head fitted on every training voice. Run once, after the choice.

    python -m training.whisper.report CORPORA EMBEDDINGS_DIR --depth L --c C [--aug] OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from training.whisper.embed import Embeddings
from training.whisper.select import (
    CORPORA,
    CorpusData,
    fit_setting,
    four_class,
    held_out_scores,
    is_test,
    keep_clips,
    load_data,
    score_clips,
    setting_parser,
)


def test_actors(corpora: Path, emb_dir: Path) -> CorpusData:
    """RAVDESS actors 19-24 with their clean window embeddings."""
    utts = four_class("ravdess", corpora)
    keep = np.asarray([is_test(u) for u in utts])
    clean = Embeddings.load(emb_dir / "emb_ravdess_clean.npz")
    return CorpusData([u for u, k in zip(utts, keep, strict=True) if k], keep_clips(clean, keep), None)


def main(argv: list[str] | None = None) -> int:
    args = setting_parser(__doc__.splitlines()[0]).parse_args(argv)
    data = load_data(args.corpora, args.embeddings)
    loco = {held: held_out_scores(data, held, args.depth, args.c, args.aug) for held in CORPORA}
    head = fit_setting(data, list(CORPORA), args.depth, args.c, args.aug)
    test = score_clips(head, test_actors(args.corpora, args.embeddings), args.depth)
    result = {
        "setting": {"depth": args.depth, "c": args.c, "aug": args.aug},
        "leave_one_corpus_out": loco,
        "loco_mean_ua": float(np.mean([v["ua"] for v in loco.values()])),
        "test_ravdess_19_24": test,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
