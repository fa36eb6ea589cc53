"""Validation during training: whole utterances, one at a time (no padding), from the dataset's RAM cache.

Each utterance is scored alone, as the daemon scores a segment, so per-utterance normalisation sees exactly
its audio. Engine-level evaluation (windows, manifests, reports) lives in `training.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from training.data.dataset import AudioDataset
from training.metrics import ccc, classification_report
from training.models.base import EmotionModel

VAD_NAMES = ("valence", "arousal", "dominance")
# scores one clip [N] -> (logits [L] or None, vad [3] or None)
Scorer = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray | None]]


def torch_scorer(model: EmotionModel) -> Scorer:
    """A scorer running the torch model (the caller sets eval mode)."""

    def score(x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        with torch.inference_mode():
            logits, vad = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])
        return (logits[0].numpy() if model.has_logits else None, vad[0].numpy() if model.has_vad else None)

    return score


def pad_clip(x: np.ndarray, min_samples: int = 8000) -> np.ndarray:
    """A clip shorter than `min_samples` repeated up to it (the engine's minimum window, and its padding)."""
    if 0 < len(x) < min_samples:
        return np.tile(x, -(-min_samples // len(x)))[:min_samples]
    return x


@dataclass
class Predictions:
    """Targets and predictions of a scorer over one or more datasets, and their report.

    With `subset` (e.g. the four classes of a model trained on more), `sub_ua`/`sub_wa` also score the items
    of those labels with the argmax restricted to them, as an engine evaluated on that label set is.
    Several datasets pool into one report (`extend`): a cross-validation ensemble's out-of-fold figures.
    """

    labels: list[str]
    subset: list[str] | None = None
    n: int = 0
    y_true: list[int] = field(default_factory=list)
    y_pred: list[int] = field(default_factory=list)
    sub_true: list[int] = field(default_factory=list)
    sub_pred: list[int] = field(default_factory=list)
    vad_true: list[tuple[float, float, float]] = field(default_factory=list)
    vad_pred: list[np.ndarray] = field(default_factory=list)

    def add(self, score: Scorer, ds: AudioDataset, min_samples: int = 8000) -> None:
        """Score every clip of `ds` (clips under min_samples are repeat-padded)."""
        sub_idx = [self.labels.index(lab) for lab in self.subset] if self.subset else []
        for i in range(len(ds)):
            logits, vad = score(pad_clip(ds.audio(i), min_samples))
            target = ds.targets[i]
            if logits is not None and target >= 0:
                self.y_true.append(target)
                self.y_pred.append(int(np.argmax(logits)))
                if sub_idx and target in sub_idx:
                    self.sub_true.append(sub_idx.index(target))
                    self.sub_pred.append(int(np.argmax(logits[sub_idx])))
            u = ds.utts[i]
            if vad is not None and u.vad is not None:
                self.vad_true.append(u.vad)
                self.vad_pred.append(np.asarray(vad, dtype=np.float64))
        self.n += len(ds)

    def extend(self, other: Predictions) -> None:
        """Pool `other`'s items into these."""
        self.n += other.n
        for name in ("y_true", "y_pred", "sub_true", "sub_pred", "vad_true", "vad_pred"):
            getattr(self, name).extend(getattr(other, name))

    def report(self) -> dict[str, Any]:
        """UA/WA/F1/confusion and V/A/D CCC of the items so far."""
        out: dict[str, Any] = {"n": self.n}
        if self.y_true:
            out.update(classification_report(np.array(self.y_true), np.array(self.y_pred), self.labels))
        if self.sub_true and self.subset:
            sub = classification_report(np.array(self.sub_true), np.array(self.sub_pred), self.subset)
            out.update({"sub_ua": sub["ua"], "sub_wa": sub["wa"], "sub_n": sub["n"]})
        if self.vad_true:
            t = np.asarray(self.vad_true, dtype=np.float64)
            p = np.stack(self.vad_pred)
            cccs = [ccc(t[:, j], p[:, j]) for j in range(3)]
            out.update({f"ccc_{n}": c for n, c in zip(VAD_NAMES, cccs, strict=True)})
            out["ccc_mean"] = float(np.mean(cccs))
        return out


def score_dataset(
    score: Scorer,
    ds: AudioDataset,
    labels: Sequence[str],
    *,
    subset: Sequence[str] | None = None,
    min_samples: int = 8000,
) -> dict[str, Any]:
    """UA/WA/F1/confusion and V/A/D CCC of `score` over `ds` (see `Predictions`)."""
    preds = Predictions(list(labels), list(subset) if subset else None)
    preds.add(score, ds, min_samples)
    return preds.report()


def validate(model: EmotionModel, ds: AudioDataset, subset: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of a torch model on `ds` (restores its train/eval mode afterwards)."""
    was_training = model.training
    model.eval()
    try:
        return score_dataset(torch_scorer(model), ds, model.labels, subset=subset)
    finally:
        model.train(was_training)
