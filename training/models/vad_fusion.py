"""Continuous valence/arousal/dominance from speech and text: wav2vec2 + DistilBERT with autoencoders.

Each modality's utterance embedding (wav2vec2 hidden states, mean-pooled; DistilBERT token states,
masked-mean-pooled) passes through its own bottleneck autoencoder: the code is what gets fused, and a
reconstruction loss keeps it informative. Fusion is early (codes concatenated into one regressor) or late
(a regressor per modality, mixed by a learned per-dimension gate). The loss is 1 - CCC per dimension plus
the weighted reconstruction terms. There are no categorical outputs (`has_logits` False; `forward` returns
empty [B, 0] logits, and the engine has only a ``vad`` output).

The exported engine is audio-only: the text code is replaced by a learned "no text" code. Training
substitutes it for missing transcripts and, with probability `text_dropout`, for present ones, so the
audio-only path is trained rather than an afterthought. With text at hand (a transcript, or a
`training.recognizer.Recognizer` run on the audio) use `predict`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.models.base import EmotionModel, ModelError, ccc_loss
from training.models.blocks import Autoencoder, mean_pool
from training.models.common import SpeechBranch, TextBranch, parse_config, text_rows

if TYPE_CHECKING:
    from training.data.types import Batch
    from training.recognizer import Recognizer

AUDIO_ONLY_NOTE = (
    "audio-only engine: the text branch is replaced by a learned no-text embedding "
    "(trained with text dropout); the fused audio+text path needs transcripts and runs in training/"
)


@dataclass
class VadFusionConfig:
    """Knobs; `backbone`/`text_backbone` are local directories (None: built from the *_config dicts)."""

    backbone: str | None = None
    backbone_kind: str = "wav2vec2"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    layer: int = -1
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    text_backbone: str | None = None
    text_vocab: str | None = None
    text_config: dict[str, Any] = field(default_factory=dict)
    freeze_text: bool = False
    max_text_tokens: int = 64
    bottleneck: int = 64
    hidden: int = 128
    fusion: str = "early"  # "early" | "late"
    dropout: float = 0.1
    text_dropout: float = 0.3
    recon_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.fusion not in ("early", "late"):
            raise ValueError(f"fusion must be 'early' or 'late', got {self.fusion!r}")
        if not 0.0 <= self.text_dropout <= 1.0:
            raise ValueError(f"text_dropout must be in [0, 1], got {self.text_dropout}")


def _regressor(dim_in: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 3))


class VadFusion(EmotionModel):
    """audio [B, N] -> (logits [B, 0], vad [B, 3] in [-1, 1])."""

    engine_note = AUDIO_ONLY_NOTE  # for the engine manifest's provenance: what the exported graph omits

    def __init__(self, labels: list[str], config: VadFusionConfig) -> None:
        super().__init__(labels, config, has_logits=False, has_vad=True)
        c = config
        self.cfg = c
        self.speech = SpeechBranch(
            "vad-fusion",
            c.backbone_kind,
            c.backbone,
            c.backbone_config,
            (c.layer,),
            freeze_feature_encoder=c.freeze_feature_encoder,
            freeze_encoder=c.freeze_backbone,
        )
        self.text = TextBranch(
            "vad-fusion",
            c.text_backbone,
            c.text_vocab,
            c.text_config,
            max_tokens=c.max_text_tokens,
            freeze_encoder=c.freeze_text,
        )
        self.audio_ae = Autoencoder(self.speech.width, c.bottleneck, c.dropout)
        self.text_ae = Autoencoder(self.text.width, c.bottleneck, c.dropout)
        self.no_text = nn.Parameter(torch.zeros(c.bottleneck))
        if c.fusion == "early":
            self.fused = _regressor(2 * c.bottleneck, c.hidden, c.dropout)
        else:
            self.audio_head = _regressor(c.bottleneck, c.hidden, c.dropout)
            self.text_head = _regressor(c.bottleneck, c.hidden, c.dropout)
            self.gate = nn.Linear(2 * c.bottleneck, 3)

    def audio_embedding(self, audio: Tensor) -> Tensor:
        (states,) = self.speech(audio)
        return mean_pool(states)

    def fuse(self, z_audio: Tensor, z_text: Tensor) -> Tensor:
        """Codes [B, bottleneck] x 2 -> V/A/D [B, 3] in [-1, 1]."""
        both = torch.cat([z_audio, z_text], dim=1)
        if self.cfg.fusion == "early":
            return torch.tanh(self.fused(both))
        g = torch.sigmoid(self.gate(both))
        return torch.tanh(g * self.audio_head(z_audio) + (1.0 - g) * self.text_head(z_text))

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        z_a = self.audio_ae.encode(self.audio_embedding(audio))
        z_t = self.no_text.unsqueeze(0).expand(z_a.shape[0], -1)
        return audio.new_zeros(audio.shape[0], 0), self.fuse(z_a, z_t)

    def _text_codes(
        self, texts: Sequence[str | None], z_audio: Tensor, drop: float
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(text codes [B, bottleneck], pooled text embeddings and their reconstructions for used rows)."""
        rows = [i for i in text_rows(list(texts)) if drop <= 0.0 or random.random() >= drop]
        z_t = self.no_text.unsqueeze(0).expand(z_audio.shape[0], -1)
        if not rows:
            return z_t, None, None
        emb = self.text.pooled([str(texts[i]) for i in rows], z_audio.device)
        code, recon = self.text_ae(emb)
        idx = torch.tensor(rows, device=z_audio.device)
        z_t = z_t.index_copy(0, idx, code)
        return z_t, emb, recon

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """1 - CCC on V/A/D plus `recon_weight` x the autoencoders' reconstruction MSE."""
        a = self.audio_embedding(batch.audio)
        z_a, a_rec = self.audio_ae(a)
        drop = self.cfg.text_dropout if self.training else 0.0
        z_t, t, t_rec = self._text_codes(batch.text, z_a, drop)
        vad = self.fuse(z_a, z_t)
        ccc = ccc_loss(vad, batch.vad.to(vad.device))
        recon = F.mse_loss(a_rec, a.detach())
        if t is not None and t_rec is not None:
            recon = recon + F.mse_loss(t_rec, t.detach())
        total = ccc + self.cfg.recon_weight * recon
        logs = {"ccc": float(ccc.detach()), "recon": float(recon.detach()), "loss": float(total.detach())}
        return total, logs

    @torch.no_grad()
    def predict(
        self,
        audio: Tensor,
        texts: Sequence[str | None] | None = None,
        recognizer: Recognizer | None = None,
        sample_rate: int = 16000,
    ) -> Tensor:
        """V/A/D [B, 3] using transcripts where given, else the recognizer's (else the no-text code)."""
        texts = list(texts) if texts is not None else [None] * audio.shape[0]
        if len(texts) != audio.shape[0]:
            raise ModelError(f"vad-fusion: {len(texts)} transcripts for {audio.shape[0]} audio rows")
        if recognizer is not None:
            rows = audio.detach().cpu().numpy().astype(np.float32)
            texts = [t if t else recognizer.transcribe(rows[i], sample_rate) for i, t in enumerate(texts)]
        z_a = self.audio_ae.encode(self.audio_embedding(audio))
        z_t, _, _ = self._text_codes(texts, z_a, 0.0)
        return self.fuse(z_a, z_t)


def build(config: dict[str, Any], labels: list[str]) -> VadFusion:
    """Registry factory (`vad-fusion`); labels are kept for the manifest but not predicted."""
    return VadFusion(
        list(labels), parse_config("vad-fusion", VadFusionConfig, config, labels, need_labels=False)
    )
