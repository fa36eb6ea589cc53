"""WavFusion: auxiliary modalities fused inside the deeper wav2vec2 layers by gated cross-attention.

The wav2vec2 encoder is run layer by layer here (conv feature encoder, feature projection, positional
convolution, then each transformer layer) so that after each of the deeper layers a gated cross-attention
block lets the speech frames attend to auxiliary tokens: DistilBERT token states of the transcript and,
optionally, a visual feature sequence. The gates start closed (tanh(0) = 0), so at initialisation the
backbone computes exactly what it was pretrained to compute. A few learned "null" tokens are always in
the auxiliary sequence: rows without text attend to them alone, and the exported audio-only engine uses
only them (absent modalities are the null tokens, as in training with `text_dropout`). LayerDrop is not
applied in this loop (fine-tuning usually disables it anyway); time masking is, in training.

Training adds the multimodal homogeneous feature discrepancy loss (`losses.discrepancy_loss`): pooled
speech and text features, projected to a shared space and L2-normalised, are pulled together for
same-class pairs and pushed beyond a margin for different-class pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.models.backbones import BackboneError, check_layers, freeze, load_speech_encoder, n_layers
from training.models.base import EmotionModel, ModelError
from training.models.blocks import GatedCrossAttention, instance_norm, mean_pool
from training.models.common import TextBranch, parse_config, text_rows, zeros_vad
from training.models.losses import discrepancy_loss

if TYPE_CHECKING:
    from training.data.types import Batch

AUDIO_ONLY_NOTE = (
    "audio-only engine: the auxiliary modalities (text, visual) are replaced by the learned null tokens "
    "(trained with text dropout); fused inference with transcripts runs in training/"
)


@dataclass
class WavFusionConfig:
    """Knobs; `fusion_layers` are 1-based wav2vec2 layers followed by a fusion block (None: deeper half)."""

    backbone: str | None = None
    backbone_kind: str = "wav2vec2"
    backbone_config: dict[str, Any] = field(default_factory=dict)
    freeze_feature_encoder: bool = True
    freeze_backbone: bool = False
    fusion_layers: tuple[int, ...] | None = None
    text_backbone: str | None = None
    text_vocab: str | None = None
    text_config: dict[str, Any] = field(default_factory=dict)
    freeze_text: bool = False
    max_text_tokens: int = 64
    visual_dim: int = 0  # width of an optional visual feature sequence (0: no visual input)
    aux_dim: int = 128
    null_tokens: int = 4
    heads: int = 4
    ff: int = 512
    dropout: float = 0.1
    text_dropout: float = 0.3
    shared_dim: int = 64
    margin: float = 1.0
    discrepancy_weight: float = 0.1
    vad_head: bool = True

    def __post_init__(self) -> None:
        if self.backbone_kind not in ("wav2vec2", "hubert"):
            raise ValueError(f"backbone_kind must be wav2vec2 or hubert, got {self.backbone_kind!r}")
        if self.fusion_layers is not None:
            self.fusion_layers = tuple(int(i) for i in self.fusion_layers)
        if self.null_tokens < 1:
            raise ValueError("null_tokens must be at least 1")


class WavFusion(EmotionModel):
    """audio [B, N] -> (logits [B, L], vad [B, 3]); `forward_multimodal` adds text/visual tokens."""

    engine_note = AUDIO_ONLY_NOTE

    def __init__(self, labels: list[str], config: WavFusionConfig) -> None:
        super().__init__(labels, config, has_logits=True, has_vad=config.vad_head)
        c = config
        self.cfg = c
        try:
            self.encoder = load_speech_encoder(c.backbone_kind, c.backbone, c.backbone_config)
            depth = n_layers(self.encoder)
            fusion = (
                c.fusion_layers if c.fusion_layers is not None else tuple(range(depth // 2 + 1, depth + 1))
            )
            check_layers("wavfusion", self.encoder, fusion)
        except BackboneError as e:
            raise ModelError(str(e)) from None
        if 0 in fusion:
            raise ModelError("wavfusion: fusion_layers are 1-based (a block follows each named layer)")
        self.fusion_at = {layer - 1: str(k) for k, layer in enumerate(sorted(set(fusion)))}
        if c.freeze_backbone:
            freeze(self.encoder)
        elif c.freeze_feature_encoder:
            freeze(self.encoder.feature_extractor)
        width = int(self.encoder.config.hidden_size)
        self.blocks = nn.ModuleDict(
            {
                k: GatedCrossAttention(width, c.heads, c.aux_dim, c.ff, c.dropout)
                for k in self.fusion_at.values()
            }
        )
        self.text = TextBranch(
            "wavfusion", c.text_backbone, c.text_vocab, c.text_config,
            max_tokens=c.max_text_tokens, freeze_encoder=c.freeze_text,
        )  # fmt: skip
        self.text_in = nn.Linear(self.text.width, c.aux_dim)
        self.visual_in = nn.Linear(c.visual_dim, c.aux_dim) if c.visual_dim > 0 else None
        self.null = nn.Parameter(0.02 * torch.randn(c.null_tokens, c.aux_dim))
        self.modality = nn.Parameter(torch.zeros(3, c.aux_dim))  # type embeddings: null, text, visual
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(width, len(labels))
        self.vad_out = nn.Linear(width, 3) if c.vad_head else None
        self.audio_shared = nn.Linear(width, c.shared_dim)
        self.text_shared = nn.Linear(self.text.width, c.shared_dim)

    def _null(self, batch: int) -> Tensor:
        return (self.null + self.modality[0]).unsqueeze(0).expand(batch, -1, -1)

    def encode(self, audio: Tensor, aux: Tensor, aux_mask: Tensor | None) -> Tensor:
        """wav2vec2 frames [B, T, H] with a gated cross-attention block after each fusion layer."""
        enc: Any = self.encoder  # wav2vec2/HuBERT internals, untyped in transformers
        feats = enc.feature_extractor(instance_norm(audio, dim=-1)).transpose(1, 2)
        proj = enc.feature_projection(feats)
        hidden = proj[0] if isinstance(proj, tuple) else proj
        if self.training and hasattr(enc, "_mask_hidden_states"):
            hidden = enc._mask_hidden_states(hidden)  # SpecAugment-style time masking, as in fine-tuning
        e: Any = enc.encoder
        stable = bool(getattr(enc.config, "do_stable_layer_norm", False))
        hidden = hidden + e.pos_conv_embed(hidden)
        hidden = e.dropout(hidden if stable else e.layer_norm(hidden))
        for i, layer in enumerate(e.layers):
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
            if i in self.fusion_at:
                hidden = self.blocks[self.fusion_at[i]](hidden, aux, aux_mask)
        return e.layer_norm(hidden) if stable else hidden

    def _heads(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        h = self.drop(pooled)
        vad = torch.tanh(self.vad_out(h)) if self.vad_out is not None else zeros_vad(h)
        return self.classifier(h), vad

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Audio only (the engine graph): the auxiliary sequence is the null tokens."""
        return self._heads(mean_pool(self.encode(audio, self._null(audio.shape[0]), None)))

    def aux_tokens(
        self, batch: int, texts: list[str | None] | None, visual: Tensor | None, visual_mask: Tensor | None,
        device: torch.device,
    ) -> tuple[Tensor, Tensor, Tensor | None, list[int]]:  # fmt: skip
        """(aux tokens [B, S, aux_dim], key mask [B, S], pooled text states of rows with text, those rows)."""
        parts, masks = (
            [self._null(batch)],
            [torch.ones(batch, self.cfg.null_tokens, dtype=torch.bool, device=device)],
        )
        rows = text_rows(texts) if texts is not None else []
        pooled = None
        if rows and texts is not None:
            states, m = self.text.tokens([str(texts[i]) for i in rows], device)
            pooled = (states * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
            idx = torch.tensor(rows, device=device)
            tok = self.text_in(states) + self.modality[1]
            full = tok.new_zeros(batch, tok.shape[1], tok.shape[2]).index_copy(0, idx, tok)
            fmask = torch.zeros(batch, tok.shape[1], dtype=torch.bool, device=device)
            parts.append(full)
            masks.append(fmask.index_copy(0, idx, m.bool()))
        if visual is not None:
            if self.visual_in is None:
                raise ModelError("wavfusion: got visual features but the model has visual_dim 0")
            parts.append(self.visual_in(visual) + self.modality[2])
            vm = visual_mask if visual_mask is not None else torch.ones(visual.shape[:2], dtype=torch.bool)
            masks.append(vm.to(device))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1), pooled, rows

    def forward_multimodal(
        self, audio: Tensor, texts: list[str | None] | None = None,
        visual: Tensor | None = None, visual_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, list[int]]:  # fmt: skip
        """(logits, vad, pooled speech [B, H], pooled text of rows with text, those rows)."""
        aux, mask, text_pooled, rows = self.aux_tokens(
            audio.shape[0], texts, visual, visual_mask, audio.device
        )
        pooled = mean_pool(self.encode(audio, aux, mask))
        logits, vad = self._heads(pooled)
        return logits, vad, pooled, text_pooled, rows

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """CE (+ V/A/D) from the fused forward, plus the weighted cross-modal discrepancy loss."""
        texts: list[str | None] = list(batch.text)
        if self.training and self.cfg.text_dropout > 0:
            texts = [None if random.random() < self.cfg.text_dropout else t for t in texts]
        logits, vad, pooled, text_pooled, rows = self.forward_multimodal(batch.audio, texts)
        total, logs = self.loss_from_outputs(logits, vad, batch)
        if text_pooled is not None and self.cfg.discrepancy_weight > 0:
            idx = torch.tensor(rows, device=pooled.device)
            a = F.normalize(self.audio_shared(pooled.index_select(0, idx)), dim=1)
            t = F.normalize(self.text_shared(text_pooled), dim=1)
            disc = discrepancy_loss(
                a, t, batch.labels.to(a.device).index_select(0, idx), margin=self.cfg.margin
            )
            total = total + self.cfg.discrepancy_weight * disc
            logs["discrepancy"] = float(disc.detach())
            logs["loss"] = float(total.detach())
        return total, logs


def build(config: dict[str, Any], labels: list[str]) -> WavFusion:
    """Registry factory (`wavfusion`)."""
    return WavFusion(
        list(labels), parse_config("wavfusion", WavFusionConfig, config, labels, need_labels=True)
    )
