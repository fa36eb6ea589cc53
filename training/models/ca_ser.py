"""CA-SER: cross-attention between MFCC and wav2vec 2.0 streams for speech emotion recognition.

Two streams. Self-supervised: wav2vec 2.0 layer-9 hidden states (the middle layers carry the most
paralinguistic information), squashed by tanh and projected linearly. Spectral: 40 MFCCs at a 10 ms hop,
normalised per utterance, through a BiLSTM and a self-attention encoder. Multi-head cross-attention lets
each MFCC frame query the wav2vec2 frames (MFCC queries, wav2vec2 keys/values), a GELU feed-forward
follows, global average pooling summarises the utterance, and a linear classifier is trained with
cross-entropy. An optional V/A/D head (tanh) learns continuous dimensions from the same embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from training.frontend import MFCC
from training.models.base import EmotionModel
from training.models.blocks import BiLSTM, TransformerBlock, instance_norm, mean_pool
from training.models.common import SpeechBranch, parse_config, zeros_vad


@dataclass
class CASERConfig:
    """CA-SER knobs; `backbone` is a local wav2vec2 directory (None: built from `backbone_config`)."""

    backbone: str | None = None
    backbone_kind: str = "wav2vec2"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    layer: int = 9
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    n_mfcc: int = 40
    lstm_hidden: int = 256
    dim: int = 256
    heads: int = 4
    ff: int = 512
    self_attention_layers: int = 1
    dropout: float = 0.1
    vad_head: bool = True


class CASER(EmotionModel):
    """audio [B, N] -> (logits [B, L], vad [B, 3])."""

    def __init__(self, labels: list[str], config: CASERConfig) -> None:
        super().__init__(labels, config, has_logits=True, has_vad=config.vad_head)
        c = config
        self.cfg = c
        self.speech = SpeechBranch(
            "ca-ser",
            c.backbone_kind,
            c.backbone,
            c.backbone_config,
            (c.layer,),
            freeze_feature_encoder=c.freeze_feature_encoder,
            freeze_encoder=c.freeze_backbone,
        )
        self.speech_proj = nn.Linear(self.speech.width, c.dim)
        self.mfcc = MFCC(c.n_mfcc, n_mels=max(40, c.n_mfcc))
        self.lstm = BiLSTM(c.n_mfcc, c.lstm_hidden)
        self.lstm_proj = nn.Linear(2 * c.lstm_hidden, c.dim)
        self.self_attn = nn.ModuleList(
            [
                TransformerBlock(c.dim, c.heads, c.ff, dropout=c.dropout)
                for _ in range(c.self_attention_layers)
            ]
        )
        self.cross = TransformerBlock(c.dim, c.heads, c.ff, dropout=c.dropout)
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.dim, len(labels))
        self.vad_out = nn.Linear(c.dim, 3) if c.vad_head else None

    def embed(self, audio: Tensor) -> Tensor:
        """Utterance embedding [B, dim]: pooled MFCC-queried cross-attention over wav2vec2 frames."""
        (w2v,) = self.speech(audio)
        kv = self.speech_proj(torch.tanh(w2v))  # [B, Tw, dim]
        m = instance_norm(self.mfcc(audio)).transpose(1, 2)  # [B, Tm, n_mfcc]
        q = self.lstm_proj(self.lstm(m))
        for block in self.self_attn:
            q = block(q)
        fused = self.cross(q, kv)
        return self.drop(mean_pool(fused))

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embed(audio)
        vad = torch.tanh(self.vad_out(h)) if self.vad_out is not None else zeros_vad(h)
        return self.classifier(h), vad


def build(config: dict[str, Any], labels: list[str]) -> CASER:
    """Registry factory (`ca-ser`)."""
    return CASER(list(labels), parse_config("ca-ser", CASERConfig, config, labels, need_labels=True))
