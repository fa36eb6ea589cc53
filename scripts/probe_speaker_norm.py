"""How much would per-speaker (per-stream) normalisation buy? A probe on the development actors only.

openSMILE eGeMAPS v02 functionals + logistic regression, six folds over RAVDESS actors 1-18 (TESS always in
training), pooled out-of-fold four-class UA, scored twice:
- raw: the features of each clip alone (what an engine that sees one window has);
- per speaker: each feature z-normalised by the mean and std over all of that speaker's clips (every RAVDESS
  emotion, labels unused), what a stream that has heard its speaker for a while could do.
Actors 19-24 are not read. Usage: python scripts/probe_speaker_norm.py [CORPORA_DIR] [CACHE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.baseline import C_GRID, _fit, egemaps_features, speaker_normalised
from training.data.corpora import load_corpus
from training.data.dataset import balanced_weights
from training.data.labels import LABEL_SETS
from training.data.types import Utterance
from training.metrics import unweighted_accuracy


def fold_of(u: Utterance) -> int:
    """Fold 0-5 of a RAVDESS development actor (actors 1-3, 4-6, ...); -1 (always training) otherwise."""
    return (int(u.speaker.split("_")[-1]) - 1) // 3 if u.corpus == "ravdess" else -1


def pooled_oof_ua(
    feats: np.ndarray, y: np.ndarray, utts: list[Utterance], labels: list[str], c: float
) -> float:
    which = np.array([fold_of(u) for u in utts])
    pred = np.full(len(utts), -1)
    for f in range(6):
        tr = np.flatnonzero((which != f) & (y >= 0))
        te = np.flatnonzero((which == f) & (y >= 0))
        w = balanced_weights([utts[i] for i in tr], labels) * len(tr)
        pred[te] = _fit(feats[tr], y[tr], c, 0, w).predict(feats[te])  # type: ignore[attr-defined]
    held = (which >= 0) & (y >= 0)
    return unweighted_accuracy(y[held], pred[held], len(labels))


def main() -> None:
    corpora = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpora")
    cache = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/egemaps-probe")
    rav = [u for u in load_corpus("ravdess", corpora / "ravdess") if int(u.speaker.split("_")[-1]) <= 18]
    utts = rav + load_corpus("tess", corpora / "tess")
    labels = LABEL_SETS["4"]
    y = np.array([labels.index(u.label) if u.label in labels else -1 for u in utts])
    feats = egemaps_features(utts, cache, trim_db=40.0).astype(np.float64)
    keys = [f"{u.corpus}/{u.speaker}" for u in utts]
    normed = speaker_normalised(feats, keys)
    for name, x in (("raw", feats), ("per speaker", normed)):
        scores = {c: pooled_oof_ua(x, y, utts, labels, c) for c in C_GRID}
        best = max(scores, key=lambda c: scores[c])
        print(f"{name}: pooled OOF four-class UA {scores[best]:.3f} (best C {best}; all {scores})")


if __name__ == "__main__":
    main()
