"""Speaker-adversarial training: an utterance embedding that does not tell who is speaking.

With 15-17 training speakers, the model can score well on them by learning who speaks and how that person
sounds when angry, which does not carry over to a new voice. A small classifier learns to name the training
speaker from the embedding; the gradient it sends back into the model is reversed (Ganin and Lempitsky 2015),
so the encoder is pushed to drop what names the speaker while the emotion heads keep what they need. The
classifier exists only in training: checkpoints and engines hold the plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.data.types import Batch
from training.mixup import draw_mix, permuted
from training.models.base import EmotionModel, ModelError


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient multiplied by -scale backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: Tensor, scale: float) -> Tensor:
    """x unchanged; what flows back through it is -scale times the gradient."""
    return _ReverseGradient.apply(x, scale)


def require_embedding(model: EmotionModel) -> None:
    """ModelError unless `model` exposes `embed(audio)` and `heads(embedding)`."""
    if not (callable(getattr(model, "embed", None)) and callable(getattr(model, "heads", None))):
        name = type(model).__name__
        raise ModelError(f"speaker_adversary needs a model with embed() and heads(); {name} lacks them")


class SpeakerAdversary(nn.Module):
    """Names the training speaker (corpus/speaker) from an embedding, through a reversed gradient."""

    def __init__(self, embedding_dim: int, speakers: Sequence[str], scale: float, hidden: int = 128) -> None:
        super().__init__()
        if not speakers:
            raise ValueError("speaker_adversary needs at least one training speaker")
        self.index = {s: i for i, s in enumerate(sorted(set(speakers)))}
        self.scale = scale
        self.net = nn.Sequential(
            nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, len(self.index))
        )

    def targets(self, batch: Batch) -> Tensor:
        """Speaker indices of the batch rows (-1, ignored, for a speaker not seen when built)."""
        keys = speaker_keys(batch.corpora, batch.speakers)
        return torch.tensor([self.index.get(k, -1) for k in keys], dtype=torch.long)

    def logits(self, embedding: Tensor) -> Tensor:
        return self.net(reverse_gradient(embedding, self.scale))

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        target = self.targets(batch).to(logits.device)
        if not bool((target >= 0).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=-1)


def speaker_keys(corpora: Sequence[str], speakers: Sequence[str]) -> list[str]:
    """The keys `SpeakerAdversary` names speakers by."""
    return [f"{c}/{s}" for c, s in zip(corpora, speakers, strict=True)]


def adversarial_loss(
    model: EmotionModel, adversary: SpeakerAdversary, batch: Batch, mixup_alpha: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """The model's own loss plus the adversary's speaker cross-entropy, on a mixed batch when
    `mixup_alpha` > 0 (each loss the same mix of both clips' losses, as in `training.mixup`)."""
    lam, order, audio = draw_mix(batch, mixup_alpha) if mixup_alpha > 0 else (1.0, None, batch.audio)
    embedding = model.embed(audio)  # type: ignore[operator]
    logits, vad = model.heads(embedding)  # type: ignore[operator]
    spk_logits = adversary.logits(embedding)
    task, logs = model.loss_from_outputs(logits, vad, batch)
    spk = adversary.loss(spk_logits, batch)
    if order is not None:
        partner_batch = permuted(batch, order)
        partner, _ = model.loss_from_outputs(logits, vad, partner_batch)
        task = lam * task + (1.0 - lam) * partner
        spk = lam * spk + (1.0 - lam) * adversary.loss(spk_logits, partner_batch)
    loss = task + spk
    logs["speaker_ce"] = float(spk.detach())
    logs["loss"] = float(task.detach())
    return loss, logs
