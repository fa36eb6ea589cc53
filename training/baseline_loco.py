"""eGeMAPS + logistic regression under leave-one-corpus-out: the reference row of engine 2.0's table.

For each corpus, train on the others and score it per clip, zero-shot, four classes (docs/default-engine.md,
2.0.0). Every training corpus weighs the same and every class within it, so nEMO's thousands of clips do not
outvote TESS's two voices. The regularisation C is chosen inside the training corpora by the same rule one
level down (train on all but one of them, score that one), so the held-out corpus chooses nothing. RAVDESS
actors 19-24, the test of record, are dropped before any audio is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.baseline import C_GRID, BaselineError, _fit, egemaps_features
from training.data.labels import LABEL_SETS
from training.data.splits import DEFAULT_TEST_ACTORS, ravdess_actor
from training.data.types import Utterance
from training.evaluate import EvalError, EvalReport, evaluate_scores
from training.metrics import unweighted_accuracy

LOCO_LABELS: tuple[str, ...] = tuple(LABEL_SETS["4"])
TRIM_DB = 40.0


def without_test_actors(utts: Sequence[Utterance]) -> list[Utterance]:
    """All clips except RAVDESS actors 19-24 (the test of record, never read here)."""
    test = {ravdess_actor(a) for a in DEFAULT_TEST_ACTORS}
    return [u for u in utts if not (u.corpus == "ravdess" and u.speaker in test)]


def corpus_class_weights(corpora: Sequence[str], y: np.ndarray) -> np.ndarray:
    """Equal total weight per corpus and per class within it; mean weight 1."""
    groups = np.asarray(corpora)
    w = np.zeros(len(y), dtype=np.float64)
    cells = sorted({(str(g), int(k)) for g, k in zip(groups, y, strict=True)})
    n_corpora = len({g for g, _ in cells})
    per_corpus = {g: sum(1 for c, _ in cells if c == g) for g, _ in cells}
    for g, k in cells:
        mask = (groups == g) & (y == k)
        w[mask] = 1.0 / (mask.sum() * per_corpus[g] * n_corpora)
    return w * len(y)


def _held_out_ua(
    feats: np.ndarray,
    y: np.ndarray,
    corpora: np.ndarray,
    train: Sequence[str],
    held: str,
    c: float,
    seed: int,
) -> tuple[float, Any]:
    """UA on corpus `held` of a model fitted on `train` (and the fitted model)."""
    tr = np.isin(corpora, list(train))
    te = corpora == held
    clf = _fit(feats[tr], y[tr], c, seed, corpus_class_weights(corpora[tr].tolist(), y[tr]))
    pred = clf.predict(feats[te])  # type: ignore[attr-defined]
    return unweighted_accuracy(y[te], pred, len(LOCO_LABELS)), clf


@dataclass
class LocoResult:
    """Per held-out corpus: UA, the C chosen on the other corpora and those inner figures, full reports."""

    held_out: dict[str, float]
    chosen_c: dict[str, float]
    inner_ua: dict[str, dict[str, float]]
    trim_db: float = TRIM_DB
    reports: dict[str, EvalReport] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.held_out.values())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "leave-one-corpus-out, zero-shot, per clip, four-class UA "
            f"({', '.join(LOCO_LABELS)}); RAVDESS actors 19-24 excluded",
            "model": "openSMILE eGeMAPS v02 functionals (silence-trimmed at "
            f"{self.trim_db:g} dB) + standardisation + logistic regression, each training corpus and each "
            "class within it weighted equally, C chosen by leave-one-corpus-out over the training corpora",
            "held_out_ua": self.held_out,
            "mean_ua": self.mean,
            "chosen_c": self.chosen_c,
            "inner_ua_by_c": self.inner_ua,
            "clips": {k: r.n for k, r in self.reports.items()},
            "speakers": {k: len(r.speakers) for k, r in self.reports.items()},
        }


def run_loco(
    utts: Sequence[Utterance],
    cache_dir: Path,
    *,
    c_grid: Sequence[float] = C_GRID,
    seed: int = 0,
    trim_db: float = TRIM_DB,
    progress: Callable[[int, int], None] | None = None,
) -> LocoResult:
    """Leave-one-corpus-out over the corpora in `utts` (at least three): four-class clips only."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise BaselineError(
            "the baseline needs scikit-learn: pip install scikit-learn (the [train] extra)"
        ) from None
    clips = [u for u in without_test_actors(utts) if u.label in LOCO_LABELS]
    names = sorted({u.corpus for u in clips})
    if len(names) < 3:
        raise EvalError(
            f"--loco needs at least three corpora with {', '.join(LOCO_LABELS)} clips, got "
            f"{', '.join(names) or 'none'}"
        )
    feats = egemaps_features(clips, cache_dir, trim_db=trim_db, progress=progress).astype(np.float64)
    y = np.array([LOCO_LABELS.index(u.label or "") for u in clips], dtype=np.int64)
    corpora = np.array([u.corpus for u in clips])
    result = LocoResult(held_out={}, chosen_c={}, inner_ua={}, trim_db=trim_db)
    for held in names:
        train = [n for n in names if n != held]
        inner = {
            c: float(
                np.mean(
                    [
                        _held_out_ua(feats, y, corpora, [t for t in train if t != v], v, c, seed)[0]
                        for v in train
                    ]
                )
            )
            for c in c_grid
        }
        best = max(c_grid, key=lambda c: (inner[c], -c))
        _ua, clf = _held_out_ua(feats, y, corpora, train, held, best, seed)
        te = np.flatnonzero(corpora == held)
        proba = np.zeros((len(te), len(LOCO_LABELS)), dtype=np.float32)
        proba[:, clf.classes_] = clf.predict_proba(feats[te])
        source = f"eGeMAPS v02 + LR, leave-one-corpus-out: held out {held}, trained on {'+'.join(train)}"
        report = evaluate_scores([clips[i] for i in te], proba, None, LOCO_LABELS, LOCO_LABELS, source)
        result.held_out[held] = float(report.ua or 0.0)
        result.chosen_c[held] = best
        result.inner_ua[held] = {f"{c:g}": v for c, v in inner.items()}
        result.reports[held] = report
    return result


def loco_table(result: LocoResult) -> str:
    """The held-out UA per corpus and the mean as a small text table."""
    names = list(result.held_out)
    head = "held out    " + "  ".join(f"{n:>8}" for n in names) + "      mean"
    row = "UA          " + "  ".join(f"{result.held_out[n]:8.4f}" for n in names) + f"  {result.mean:8.4f}"
    c_row = "chosen C    " + "  ".join(f"{result.chosen_c[n]:8g}" for n in names)
    return "\n".join([head, row, c_row])
