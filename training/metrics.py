"""Classification and regression metrics of speech emotion recognition, in numpy.

UA (unweighted accuracy, the mean per-class recall) is the field's headline figure because the corpora are
class-imbalanced; WA is plain accuracy; CCC (Lin's concordance correlation coefficient) is the usual score for
valence/arousal/dominance because it penalises bias and scale errors that Pearson's r ignores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.ArrayLike


def _pair(y_true: IntArray, y_pred: IntArray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    keep = t >= 0  # -1 marks an item without a label in the set
    return t[keep], p[keep]


def confusion_matrix(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> np.ndarray:
    """counts[i, j] = items of true class i predicted as j (rows: truth, columns: prediction)."""
    t, p = _pair(y_true, y_pred)
    if n_classes is None:
        n_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (p.min() < 0 or p.max() >= n_classes or t.max() >= n_classes):
        raise ValueError(f"class index outside 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def weighted_accuracy(y_true: IntArray, y_pred: IntArray) -> float:
    """Fraction of items classified correctly (every item weighs the same)."""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(t == p))


def per_class_recall(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> np.ndarray:
    """Recall of each class; NaN for a class with no true items."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def unweighted_accuracy(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> float:
    """Mean recall over the classes that occur in y_true (every class weighs the same)."""
    rec = per_class_recall(y_true, y_pred, n_classes)
    if np.all(np.isnan(rec)):
        raise ValueError("accuracy of an empty set")
    return float(np.nanmean(rec))


def per_class_f1(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> np.ndarray:
    """F1 of each class (0 where precision and recall are both 0); NaN for a class absent from both
    truth and prediction."""
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-12), np.nan)
    return f1


def macro_f1(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> float:
    """Mean F1 over classes present in truth or prediction (scikit-learn's macro average)."""
    f1 = per_class_f1(y_true, y_pred, n_classes)
    if np.all(np.isnan(f1)):
        raise ValueError("F1 of an empty set")
    return float(np.nanmean(f1))


def weighted_f1(y_true: IntArray, y_pred: IntArray, n_classes: int | None = None) -> float:
    """F1 per class averaged with weights = true class support."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1).astype(np.float64)
    if support.sum() == 0:
        raise ValueError("F1 of an empty set")
    f1 = np.nan_to_num(per_class_f1(y_true, y_pred, n_classes))
    return float(np.sum(f1 * support) / support.sum())


def ccc(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Lin's concordance correlation coefficient 2*cov / (var_t + var_p + (mean_t - mean_p)^2), population
    moments; pairs with a NaN are ignored. 1.0 for identical constant series, 0.0 when one is constant and
    the other is not centred on it."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    keep = ~(np.isnan(t) | np.isnan(p))
    t, p = t[keep], p[keep]
    if t.size == 0:
        raise ValueError("CCC of an empty set")
    mt, mp = t.mean(), p.mean()
    cov = np.mean((t - mt) * (p - mp))
    denom = t.var() + p.var() + (mt - mp) ** 2
    if denom == 0.0:
        return 1.0  # both constant and equal
    return float(2.0 * cov / denom)


def classification_report(y_true: IntArray, y_pred: IntArray, labels: Sequence[str]) -> dict[str, object]:
    """UA, WA, macro/weighted F1, per-class recall and the confusion matrix as plain JSON-able values."""
    n = len(labels)
    rec = per_class_recall(y_true, y_pred, n)
    return {
        "n": int(_pair(y_true, y_pred)[0].size),
        "ua": unweighted_accuracy(y_true, y_pred, n),
        "wa": weighted_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, n),
        "weighted_f1": weighted_f1(y_true, y_pred, n),
        "recall": {lab: (None if np.isnan(r) else float(r)) for lab, r in zip(labels, rec, strict=True)},
        "confusion": confusion_matrix(y_true, y_pred, n).tolist(),
    }
