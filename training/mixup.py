"""Mixup for audio-only models: train on weighted sums of two clips against the same mix of their targets.

With a few hundred clips per class the models memorise speakers within ten epochs; mixing clips (Zhang et al.
2018) keeps the decision boundaries smooth between classes and speakers. The mixing weight is drawn from
Beta(alpha, alpha) and folded to >= 0.5, so the first clip always dominates what is heard. The loss is the
same mix of each clip's own loss on the one forward pass (cross-entropy is linear in the target, so this is
mixup's soft-label loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.data.types import Batch
from training.models.base import EmotionModel, ModelError


def supports_mixup(model: EmotionModel) -> bool:
    """Models that override `compute_loss` use extra inputs (transcripts) that cannot be mixed."""
    return type(model).compute_loss is EmotionModel.compute_loss


def require_mixup(model: EmotionModel) -> None:
    """ModelError unless `model` can be trained with mixup."""
    if not supports_mixup(model):
        raise ModelError(f"mixup needs an audio-only model; {type(model).__name__} uses extra inputs")


def permuted(batch: Batch, order: Tensor) -> Batch:
    """The batch's targets (and identities) in another row order; audio unchanged."""
    idx = order.tolist()
    return Batch(
        batch.audio,
        batch.lengths,
        batch.labels[order],
        batch.vad[order],
        [batch.text[i] for i in idx],
        [batch.speakers[i] for i in idx],
        [batch.corpora[i] for i in idx],
    )


def draw_mix(batch: Batch, alpha: float) -> tuple[float, Tensor, Tensor]:
    """(weight >= 0.5, partner order, mixed audio), drawn from torch's global RNG (which the trainer seeds
    per epoch): the weight first, then the partners."""
    dist = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
    lam = float(dist.sample())
    lam = max(lam, 1.0 - lam)
    order = torch.randperm(len(batch))
    return lam, order, lam * batch.audio + (1.0 - lam) * batch.audio[order]


def mixup_loss(model: EmotionModel, batch: Batch, alpha: float) -> tuple[Tensor, dict[str, float]]:
    """Loss on a mixed batch (`draw_mix`)."""
    require_mixup(model)
    lam, order, mixed = draw_mix(batch, alpha)
    logits, vad = model(mixed)
    own, logs = model.loss_from_outputs(logits, vad, batch)
    partner, _ = model.loss_from_outputs(logits, vad, permuted(batch, order))
    loss = lam * own + (1.0 - lam) * partner
    logs["loss"] = float(loss.detach())
    return loss, logs
