"""Linear heads on pooled encoder embeddings: fitting, clip-level scoring and leave-one-corpus-out figures.

A head is a standardisation followed by class-balanced logistic regression (categories) and ridge
regression (valence, arousal, dominance). Windows are fitted; a clip's prediction is the mean of its
windows' log-probabilities, as a stream's windows would be combined. Every corpus carries equal weight,
and every class within it, so that nEMO's 3,000 clips do not outvote TESS's two voices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LinearHead:
    """y = ((x - mean) / scale) @ W.T + b for logits, and the same form for V/A/D."""

    mean: F64
    scale: F64
    weight: F64  # [K, D]
    bias: F64  # [K]
    vad_weight: F64  # [3, D]
    vad_bias: F64  # [3]

    def logits(self, x: F32) -> F64:
        return ((x - self.mean) / self.scale) @ self.weight.T + self.bias

    def vad(self, x: F32) -> F64:
        return np.clip(((x - self.mean) / self.scale) @ self.vad_weight.T + self.vad_bias, -1.0, 1.0)


def balanced_weights(labels: I64, groups: Sequence[str]) -> F64:
    """Equal total weight per group (corpus) and per class within it; mean weight 1."""
    g = np.asarray(groups)
    w = np.zeros(len(labels))
    cells = {(gi, li) for gi, li in zip(g, labels, strict=True)}
    per_group = {gi: sum(1 for c in cells if c[0] == gi) for gi, _ in cells}
    for gi, li in cells:
        mask = (g == gi) & (labels == li)
        w[mask] = 1.0 / (mask.sum() * per_group[gi] * len(per_group))
    return w * len(labels)


def fit_head(x: F32, labels: I64, vad: F64, groups: Sequence[str], c: float, seed: int = 0) -> LinearHead:
    """Fit the category and V/A/D heads on windows ``x`` [W, D]."""
    from sklearn.linear_model import LogisticRegression, Ridge

    mean = x.mean(axis=0).astype(np.float64)
    scale = x.std(axis=0).astype(np.float64) + 1e-6
    z = (x - mean) / scale
    w = balanced_weights(labels, groups)
    clf = LogisticRegression(C=c, max_iter=300, random_state=seed)
    clf.fit(z, labels, sample_weight=w)
    reg = Ridge(alpha=float(len(z)) / 100.0)
    reg.fit(z, vad, sample_weight=w)
    return LinearHead(mean, scale, clf.coef_, clf.intercept_, reg.coef_, reg.intercept_)


def clip_log_probs(logits: F64, clip: I64, n_clips: int) -> F64:
    """Mean over each clip's windows of the log-softmax: [n_clips, K]."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    out = np.zeros((n_clips, logits.shape[1]))
    np.add.at(out, clip, logp)
    counts = np.bincount(clip, minlength=n_clips)
    return out / np.maximum(counts, 1)[:, None]
