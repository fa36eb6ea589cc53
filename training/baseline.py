"""The classic reference point: openSMILE eGeMAPS v02 functionals + standardisation + logistic regression.

88 hand-crafted, knowledge-based acoustic features per utterance (Eyben et al. 2016) with a linear classifier;
a learned engine that cannot beat it on the same speaker-independent split is not worth shipping. Features
are cached per file (keyed by path, size and modification time) in a user-given directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.dataset import balanced_weights, load_audio, trim_silence
from training.data.labels import LABEL_SETS
from training.data.splits import default_split
from training.data.types import Utterance
from training.evaluate import EvalError, EvalReport, evaluate_scores
from training.metrics import unweighted_accuracy

FEATURE_SET = "eGeMAPSv02"
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class BaselineError(Exception):
    """The baseline cannot run (openSMILE or scikit-learn missing, unwritable cache): one-line message."""


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


class FeatureCache:
    """Features of one configuration in one .npz (string keys + float matrix; no pickles)."""

    def __init__(self, cache_dir: Path, config: str) -> None:
        tag = hashlib.sha256(config.encode()).hexdigest()[:12]
        self.path = cache_dir / f"{FEATURE_SET.lower()}-{tag}.npz"
        self.cache_dir = cache_dir
        self.rows: dict[str, np.ndarray] = {}
        if self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as data:
                    self.rows = dict(zip(data["keys"].tolist(), data["features"], strict=True))
            except (OSError, ValueError, KeyError):
                self.rows = {}  # a corrupt cache is rebuilt, not trusted

    def save(self) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            keys = np.array(list(self.rows), dtype=np.str_)
            feats = np.stack(list(self.rows.values())) if self.rows else np.zeros((0, 0), np.float32)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=keys, features=feats)
            tmp.replace(self.path)
        except OSError as e:
            raise BaselineError(f"cannot write the feature cache {self.path}: {e.strerror}") from None


def egemaps_features(
    utts: Sequence[Utterance],
    cache_dir: Path,
    *,
    trim_db: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """[U, 88] eGeMAPS v02 functionals, computed once per file and cached."""
    try:
        import opensmile
    except ImportError:
        raise BaselineError(
            "the baseline needs openSMILE: pip install opensmile (the [train] extra)"
        ) from None
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    cache = FeatureCache(Path(cache_dir), f"{FEATURE_SET}|trim={trim_db}|opensmile={opensmile.__version__}")
    out: list[np.ndarray] = []
    dirty = 0
    for i, u in enumerate(utts):
        key = _file_key(u.path)
        row = cache.rows.get(key)
        if row is None:
            x = load_audio(u.path)
            if trim_db is not None:
                x = trim_silence(x, trim_db)
            row = smile.process_signal(x, 16000).to_numpy(dtype=np.float32).reshape(-1)
            cache.rows[key] = row
            dirty += 1
            if dirty % 500 == 0:
                cache.save()
        out.append(row)
        if progress is not None:
            progress(i + 1, len(utts))
    if dirty:
        cache.save()
    return np.stack(out) if out else np.zeros((0, 88), dtype=np.float32)


@dataclass
class BaselineResult:
    """Figures and full reports of the baseline on the test set, plus the chosen regularisation."""

    figures: dict[str, float | None]
    reports: dict[str, EvalReport]
    chosen_c: dict[str, float]
    cv_ua: dict[str, float]  # cross-validated development UA of the chosen C


def speaker_normalised(feats: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Each row z-normalised by its speaker's mean and std over all of that speaker's rows (labels unused):
    the baseline's counterpart of the daemon's per-stream centring, with the advantage of every clip."""
    out = np.empty_like(feats)
    key_array = np.asarray(keys)
    for key in set(keys):
        rows = key_array == key
        mean, std = feats[rows].mean(axis=0), feats[rows].std(axis=0) + 1e-6
        out[rows] = (feats[rows] - mean) / std
    return out


def _fit(features: np.ndarray, y: np.ndarray, c: float, seed: int, weights: np.ndarray | None) -> object:
    """Standardise + multinomial logistic regression; `weights` None means sklearn's class balancing."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=c, max_iter=5000, class_weight="balanced" if weights is None else None, random_state=seed
        ),
    )
    clf.fit(features, y, logisticregression__sample_weight=weights)
    return clf


def _choose_c(
    feats: np.ndarray,
    y: np.ndarray,
    utts: list[Utterance],
    labels: list[str],
    c_grid: Sequence[float],
    *,
    folds: int,
    seed: int,
    balance: bool,
) -> dict[float, float]:
    """Pooled UA of each C under speaker-grouped cross-validation over the RAVDESS development actors
    (other corpora always stay in training): 18 actors give a steadier choice than 3 validation actors."""
    rav = sorted({u.speaker for u in utts if u.corpus == "ravdess"})
    k = min(folds, len(rav))
    if k < 2:
        raise EvalError("baseline: cross-validation needs at least two RAVDESS development actors")
    fold_of = {spk: i % k for i, spk in enumerate(rav)}
    which = np.array([fold_of.get(u.speaker, -1) for u in utts])
    scores: dict[float, float] = {}
    for c in c_grid:
        pred = np.full(len(utts), -1, dtype=np.int64)
        for f in range(k):
            tr = np.flatnonzero((which != f) & (y >= 0))
            te = np.flatnonzero((which == f) & (y >= 0))
            w = balanced_weights([utts[i] for i in tr], labels) * len(tr) if balance else None
            clf = _fit(feats[tr], y[tr], c, seed, w)
            pred[te] = clf.predict(feats[te])  # type: ignore[attr-defined]
        held = (which >= 0) & (y >= 0)
        scores[c] = unweighted_accuracy(y[held], pred[held], len(labels))
    return scores


def run_baseline(
    utts: Sequence[Utterance],
    cache_dir: Path,
    *,
    label_sets: Sequence[str] = ("4", "all"),
    c_grid: Sequence[float] = C_GRID,
    seed: int = 0,
    trim_db: float | None = None,
    balance: bool = True,
    folds: int = 6,
    speaker_norm: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BaselineResult:
    """eGeMAPS + logistic regression on the default split, scored once on the test actors (RAVDESS 19-24).

    Development data = the split's train + validation (RAVDESS 1-18 and the other corpora). C is chosen by
    speaker-grouped cross-validation over RAVDESS actors 1-18 (`folds` folds), then the model is refit on all
    development data. `balance`: weight items like the training sampler does (each corpus, speaker and class
    equally, `balanced_weights`) so TESS's 2800 items do not outweigh RAVDESS; else plain class balancing.
    `speaker_norm`: every speaker's features (training and test alike) z-normalised over all their clips.
    """
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise BaselineError(
            "the baseline needs scikit-learn: pip install scikit-learn (the [train] extra)"
        ) from None
    split = default_split(list(utts))
    dev = split.train + split.val
    feats = egemaps_features(dev + split.test, cache_dir, trim_db=trim_db, progress=progress)
    if speaker_norm:
        feats = speaker_normalised(
            feats.astype(np.float64), [f"{u.corpus}/{u.speaker}" for u in dev + split.test]
        )
    f_dev, f_te = feats[: len(dev)], feats[len(dev) :]
    reports: dict[str, EvalReport] = {}
    chosen: dict[str, float] = {}
    cv_ua: dict[str, float] = {}
    for name in label_sets:
        labels = LABEL_SETS[name]
        pos = {lab: j for j, lab in enumerate(labels)}
        y = np.array([pos.get(u.label or "", -1) for u in dev], dtype=np.int64)
        if len(set(y[y >= 0].tolist())) < 2:
            raise EvalError(f"baseline: fewer than two {name}-set classes in the training data")
        scores = _choose_c(f_dev, y, dev, labels, c_grid, folds=folds, seed=seed, balance=balance)
        best = max(c_grid, key=lambda c: (scores[c], -c))
        chosen[name], cv_ua[name] = best, scores[best]
        keep = np.flatnonzero(y >= 0)
        w = balanced_weights([dev[i] for i in keep], labels) * len(keep) if balance else None
        clf = _fit(f_dev[keep], y[keep], best, seed, w)
        proba = np.zeros((len(split.test), len(labels)), dtype=np.float32)
        classes = clf.classes_  # type: ignore[attr-defined]
        proba[:, classes] = clf.predict_proba(f_te)  # type: ignore[attr-defined]
        source = f"eGeMAPS v02 + LR{', per-speaker norm' if speaker_norm else ''} ({name})"
        reports[name] = evaluate_scores(split.test, proba, None, labels, labels, source)
    figures: dict[str, float | None] = {}
    if "4" in reports:
        figures.update(ua_4=reports["4"].ua, wa_4=reports["4"].wa)
    if "all" in reports:
        figures.update(ua_all=reports["all"].ua, wa_all=reports["all"].wa)
    return BaselineResult(figures=figures, reports=reports, chosen_c=chosen, cv_ua=cv_ua)
