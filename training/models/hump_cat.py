"""HuMP-CAT: HuBERT, MFCC and prosody fused by two-stage cross-attention, trained with AM-Softmax.

Three views of the same window. HuBERT layers 1 (close to acoustics) and 9 (most emotion-relevant)
concatenated and projected. 39 MFCCs (13 + deltas + delta-deltas) through a BiLSTM. Prosody
(`training.prosody`: energy, voicing, pitch, ZCR, spectral shape, 10 ms frames) through dense layers as
frame tokens, plus one utterance token from statistics (per-track mean and std, voiced fraction, and
jitter/shimmer-like mean absolute frame-to-frame changes of log f0 and log energy over voiced frames).
Stage 1: MFCC frames attend to the prosody tokens; stage 2: the result attends to the HuBERT frames.
Mean + standard-deviation pooling gives the utterance embedding; a cosine head is trained with additive
margin softmax (AM-Softmax), which keeps classes compact -- useful when fine-tuning on a new corpus with
little data (transfer with `--init CHECKPOINT --fraction 0.2`: the label head is re-initialised when the
label set differs, see `training.checkpoints.load_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.frontend import MFCC
from training.models.base import EmotionModel, ccc_loss, masked_mse
from training.models.blocks import BiLSTM, TransformerBlock, instance_norm, mean_var_pool
from training.models.common import SpeechBranch, parse_config, zeros_vad
from training.models.losses import CosineHead, am_softmax_loss
from training.prosody import N_FEATURES, Prosody

if TYPE_CHECKING:
    from training.data.types import Batch

N_STATS = 2 * N_FEATURES + 3


def prosody_statistics(p: Tensor, eps: float = 1e-6) -> Tensor:
    """[B, 6, T] prosody tracks -> [B, 15] utterance statistics (all in-graph, any T >= 1).

    Tracks 0 (log energy), 1 (voicing in [0, 1]) and 2 (log f0) feed the voice-quality terms: the
    voicing-weighted mean |delta log f0| between consecutive frames (jitter-like) and |delta log energy|
    (shimmer-like; half of it is the log-amplitude change).
    """
    mean = p.mean(dim=2)
    std = torch.sqrt(((p - mean.unsqueeze(2)) ** 2).mean(dim=2) + eps)
    voicing = p[:, 1]
    voiced_fraction = voicing.mean(dim=1, keepdim=True)
    both = torch.cat([voicing[:, :1] * 0.0, voicing[:, 1:] * voicing[:, :-1]], dim=1)  # [B, T]
    norm = both.sum(dim=1, keepdim=True) + eps

    def weighted_change(track: Tensor) -> Tensor:
        step = torch.cat([track[:, :1] * 0.0, (track[:, 1:] - track[:, :-1]).abs()], dim=1)
        return (both * step).sum(dim=1, keepdim=True) / norm

    jitter = weighted_change(p[:, 2])
    shimmer = weighted_change(p[:, 0])
    return torch.cat([mean, std, voiced_fraction, jitter, shimmer], dim=1)


@dataclass
class HumpCatConfig:
    """HuMP-CAT knobs; `backbone` is a local HuBERT directory (None: built from `backbone_config`)."""

    backbone: str | None = None
    backbone_kind: str = "hubert"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    layers: tuple[int, ...] = (1, 9)
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    n_mfcc: int = 13
    lstm_hidden: int = 128
    prosody_dim: int = 64
    dim: int = 256
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    am_scale: float = 30.0
    am_margin: float = 0.35
    vad_head: bool = True

    def __post_init__(self) -> None:
        self.layers = tuple(int(i) for i in self.layers)  # JSON gives a list
        if not self.layers:
            raise ValueError("layers must name at least one HuBERT layer")


class HumpCat(EmotionModel):
    """audio [B, N] -> (scaled cosine logits [B, L], vad [B, 3])."""

    def __init__(self, labels: list[str], config: HumpCatConfig) -> None:
        super().__init__(labels, config, has_logits=True, has_vad=config.vad_head)
        c = config
        self.cfg = c
        self.speech = SpeechBranch(
            "hump-cat",
            c.backbone_kind,
            c.backbone,
            c.backbone_config,
            c.layers,
            freeze_feature_encoder=c.freeze_feature_encoder,
            freeze_encoder=c.freeze_backbone,
        )
        self.speech_proj = nn.Linear(len(c.layers) * self.speech.width, c.dim)
        self.mfcc = MFCC(c.n_mfcc, with_deltas=True)
        self.lstm = BiLSTM(3 * c.n_mfcc, c.lstm_hidden)
        self.lstm_proj = nn.Linear(2 * c.lstm_hidden, c.dim)
        self.prosody = Prosody()
        self.prosody_bn = nn.BatchNorm1d(N_FEATURES)
        self.frame_dense = nn.Sequential(
            nn.Linear(2 * N_FEATURES, c.prosody_dim), nn.GELU(), nn.Linear(c.prosody_dim, c.dim)
        )
        self.stats_bn = nn.BatchNorm1d(N_STATS)
        self.stats_dense = nn.Sequential(
            nn.Linear(N_STATS, c.prosody_dim), nn.GELU(), nn.Linear(c.prosody_dim, c.dim)
        )
        self.stage1 = TransformerBlock(c.dim, c.heads, c.ff, dropout=c.dropout)
        self.stage2 = TransformerBlock(c.dim, c.heads, c.ff, dropout=c.dropout)
        self.embedding = nn.Sequential(nn.Linear(2 * c.dim, c.dim), nn.GELU(), nn.Dropout(c.dropout))
        self.head = CosineHead(c.dim, len(labels), scale=c.am_scale)
        self.vad_out = nn.Linear(c.dim, 3) if c.vad_head else None

    def _norm_stats(self, s: Tensor) -> Tensor:
        """Batch-normalise the statistics; a single-row training batch uses the running estimates."""
        if self.training and s.shape[0] < 2:
            bn = self.stats_bn
            return F.batch_norm(s, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return self.stats_bn(s)

    def prosody_tokens(self, audio: Tensor) -> Tensor:
        """[B, T + 1, dim]: one token per 10 ms frame plus one utterance-statistics token."""
        p = self.prosody(audio)  # [B, 6, T]
        frames = torch.cat([instance_norm(p), self.prosody_bn(p)], dim=1).transpose(1, 2)
        stats = self.stats_dense(self._norm_stats(prosody_statistics(p))).unsqueeze(1)
        return torch.cat([self.frame_dense(frames), stats], dim=1)

    def embed(self, audio: Tensor) -> Tensor:
        """Utterance embedding [B, dim]."""
        hubert = self.speech_proj(torch.cat(self.speech(audio), dim=-1))  # [B, Th, dim]
        m = instance_norm(self.mfcc(audio)).transpose(1, 2)  # [B, Tm, 39]
        mfcc = self.lstm_proj(self.lstm(m))
        s1 = self.stage1(mfcc, self.prosody_tokens(audio))
        s2 = self.stage2(s1, hubert)
        return self.embedding(mean_var_pool(s2))

    def _vad(self, h: Tensor) -> Tensor:
        return torch.tanh(self.vad_out(h)) if self.vad_out is not None else zeros_vad(h)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embed(audio)
        return self.head(h), self._vad(h)

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """AM-Softmax on labelled rows plus the weighted CCC/MSE V/A/D term."""
        h = self.embed(batch.audio)
        cos = self.head.cosine(h)
        labels = batch.labels.to(h.device)
        am = am_softmax_loss(cos, labels, scale=self.cfg.am_scale, margin=self.cfg.am_margin)
        total = am
        logs = {"am_softmax": float(am.detach())}
        if self.vad_out is not None:
            w = self.loss_weights
            target = batch.vad.to(h.device)
            vad = self._vad(h)
            vl = ccc_loss(vad, target) if w.vad_loss == "ccc" else masked_mse(vad, target)
            total = total + w.vad * vl
            logs["vad"] = float(vl.detach())
        logs["loss"] = float(total.detach())
        return total, logs


def build(config: dict[str, Any], labels: list[str]) -> HumpCat:
    """Registry factory (`hump-cat`)."""
    return HumpCat(list(labels), parse_config("hump-cat", HumpCatConfig, config, labels, need_labels=True))
