"""The interface every emotrack emotion model implements, so the trainer and exporter treat them alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # the data package is written in parallel; only its type is needed here
    from training.data.types import Batch


class ModelError(Exception):
    """A user-caused model problem (unknown model name, bad config key): one-line message."""


@dataclass
class LossWeights:
    """Weights of the loss terms shared by all models (configurable per run)."""

    ce: float = 1.0
    vad: float = 0.5
    label_smoothing: float = 0.1
    vad_loss: str = "ccc"  # "ccc" | "mse"


def ccc_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - mean concordance correlation over the columns; rows with NaN targets are ignored per column."""
    losses = []
    for j in range(pred.shape[1]):
        mask = ~torch.isnan(target[:, j])
        if int(mask.sum()) < 2:
            continue
        p, t = pred[mask, j], target[mask, j]
        pm, tm = p.mean(), t.mean()
        pv, tv = p.var(unbiased=False), t.var(unbiased=False)
        cov = ((p - pm) * (t - tm)).mean()
        losses.append(1.0 - 2.0 * cov / (pv + tv + (pm - tm) ** 2 + 1e-8))
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the non-NaN target entries."""
    mask = ~torch.isnan(target)
    if int(mask.sum()) == 0:
        return pred.sum() * 0.0
    return ((pred[mask] - target[mask]) ** 2).mean()


class EmotionModel(nn.Module):
    """Base class: audio [B, N] (16 kHz, [-1, 1]) -> (logits [B, L], vad [B, 3] in [-1, 1]).

    Subclasses implement `forward` (export-friendly: no data-dependent Python control flow) and may
    override `compute_loss` to use extra training-only inputs (transcripts). The default loss is
    label-smoothed cross-entropy on labelled rows (label -1 = none) plus a CCC or MSE V/A/D term
    on rows with targets.
    """

    labels: list[str]
    has_logits: bool
    has_vad: bool
    config: Any

    def __init__(
        self, labels: list[str], config: Any, *, has_logits: bool = True, has_vad: bool = True
    ) -> None:
        super().__init__()
        if not has_logits and not has_vad:
            raise ModelError("a model needs at least one output (logits or vad)")
        self.labels = list(labels)
        self.config = config
        self.has_logits = has_logits
        self.has_vad = has_vad
        self.loss_weights = LossWeights()

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Forward the batch audio and combine CE and V/A/D losses; returns (loss, scalar logs)."""
        logits, vad = self(batch.audio)
        return self.loss_from_outputs(logits, vad, batch)

    def loss_from_outputs(self, logits: Tensor, vad: Tensor, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """The shared loss on given outputs (subclasses with extra inputs reuse it)."""
        w = self.loss_weights
        total = logits.sum() * 0.0
        logs: dict[str, float] = {}
        if self.has_logits:
            labels = batch.labels.to(logits.device)
            keep = labels >= 0
            if bool(keep.any()):
                ce = nn.functional.cross_entropy(
                    logits[keep], labels[keep], label_smoothing=w.label_smoothing
                )
                total = total + w.ce * ce
                logs["ce"] = float(ce.detach())
        if self.has_vad:
            target = batch.vad.to(vad.device)
            vl = ccc_loss(vad, target) if w.vad_loss == "ccc" else masked_mse(vad, target)
            total = total + w.vad * vl
            logs["vad"] = float(vl.detach())
        logs["loss"] = float(total.detach())
        return total, logs

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict (saved beside checkpoints)."""
        if is_dataclass(self.config) and not isinstance(self.config, type):
            return asdict(self.config)
        return dict(self.config) if isinstance(self.config, dict) else {}
