"""Losses of the paper seed models: AM-Softmax (HuMP-CAT) and the cross-modal discrepancy loss (WavFusion).

The CCC loss lives in `training.models.base` (shared by every model with a V/A/D head).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class CosineHead(nn.Module):
    """Cosine-similarity classifier: scale * cos(embedding, class weight) [B, L].

    At inference these are the logits (softmax-ready); training subtracts the AM-Softmax margin from the
    target class (`am_softmax_loss`), which tightens classes around their weight directions.
    """

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.cosine(x)


def am_softmax_loss(cosine: Tensor, labels: Tensor, *, scale: float = 30.0, margin: float = 0.35) -> Tensor:
    """Additive-margin softmax (Wang et al. 2018): CE over s*(cos - m*[j == y]); label -1 rows skipped."""
    keep = labels >= 0
    if not bool(keep.any()):
        return cosine.sum() * 0.0
    cos, y = cosine[keep], labels[keep]
    margins = F.one_hot(y, cos.shape[1]).to(cos.dtype) * margin
    return F.cross_entropy(scale * (cos - margins), y)


def discrepancy_loss(audio: Tensor, other: Tensor, labels: Tensor, *, margin: float = 1.0) -> Tensor:
    """Margin-based multimodal homogeneous feature discrepancy loss (WavFusion).

    Over all cross-modal pairs (audio_i, other_j) of labelled rows with Euclidean distance d_ij:
    same-class pairs are pulled together (mean d^2) and different-class pairs pushed beyond the margin
    (mean max(0, margin - d)^2); the loss is the sum of the two means (a missing kind of pair adds 0).
    """
    keep = labels >= 0
    if int(keep.sum()) < 1:
        return audio.sum() * 0.0
    a, o, y = audio[keep], other[keep], labels[keep]
    sq = (a[:, None, :] - o[None, :, :]).pow(2).sum(dim=-1)  # [n, n] squared distances
    d = torch.sqrt(sq + 1e-12)  # finite gradient at d = 0
    same = (y[:, None] == y[None, :]).to(sq.dtype)
    diff = 1.0 - same
    pull = (same * sq).sum() / same.sum().clamp(min=1.0)
    push = (diff * F.relu(margin - d).pow(2)).sum() / diff.sum().clamp(min=1.0)
    return pull + push
