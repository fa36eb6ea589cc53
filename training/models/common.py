"""Pieces every paper seed model needs: config parsing with one-line errors and a speech-encoder branch."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from training.models.backbones import (
    BackboneError,
    check_layers,
    freeze,
    hidden_size,
    load_speech_encoder,
    load_text_encoder,
    n_layers,
    truncate_layers,
)
from training.models.base import ModelError
from training.models.blocks import instance_norm

C = TypeVar("C")


def parse_config(
    name: str, cls: type[C], config: dict[str, Any], labels: list[str], *, need_labels: bool
) -> C:
    """Dataclass config from a dict: unknown keys and a missing label set are one-line `ModelError`s."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    bad = sorted(set(config) - known)
    if bad:
        raise ModelError(
            f"{name}: unknown config key(s) {', '.join(bad)} (known: {', '.join(sorted(known))})"
        )
    if need_labels and not labels:
        raise ModelError(f"{name}: needs at least one label")
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{name}: bad config: {e}") from None


class SpeechBranch(nn.Module):
    """A wav2vec2/HuBERT/WavLM encoder that returns the hidden states of chosen layers.

    Layers above the deepest one used are dropped. The input is normalised per utterance (zero mean, unit
    variance, as the wav2vec2 feature extractor does) inside the graph. The conv feature encoder can be
    frozen (usual when fine-tuning), or the whole encoder.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        path: str | None,
        overrides: dict[str, Any] | None,
        layers: tuple[int, ...],
        *,
        freeze_feature_encoder: bool = True,
        freeze_encoder: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        try:
            self.encoder = load_speech_encoder(kind, path, overrides)
            depth = n_layers(self.encoder)
            layers = tuple(depth + 1 + i if i < 0 else i for i in layers)  # -1 = the last layer
            check_layers(name, self.encoder, layers)
        except BackboneError as e:
            raise ModelError(str(e)) from None
        self.layers = tuple(layers)
        self.normalize = normalize
        deepest = max(max(layers), 1)
        if getattr(self.encoder.config, "do_stable_layer_norm", False) and deepest < depth:
            deepest += 1  # pre-norm encoders layer-normalise their last hidden state: keep layer k as is
        truncate_layers(self.encoder, deepest)
        self.width = hidden_size(self.encoder)
        if freeze_encoder:
            freeze(self.encoder)
        elif freeze_feature_encoder:
            freeze(self.encoder.feature_extractor)

    def prepare(self, audio: Tensor) -> Tensor:
        return instance_norm(audio, dim=-1) if self.normalize else audio

    def forward(self, audio: Tensor) -> list[Tensor]:
        states = self.encoder(self.prepare(audio), output_hidden_states=True).hidden_states
        return [states[i] for i in self.layers]


def zeros_vad(x: Tensor) -> Tensor:
    """A [B, 3] placeholder for models without a V/A/D head (the exporter drops unlisted outputs)."""
    return torch.zeros(x.shape[0], 3, dtype=x.dtype, device=x.device)


class TextBranch(nn.Module):
    """DistilBERT token states for a list of transcripts (training-time input; never in the exported graph).

    The tokenizer comes from the same local directory as the encoder, or from a WordPiece vocab file when
    the encoder is built from a config.
    """

    def __init__(
        self,
        name: str,
        path: str | None,
        vocab: str | None,
        overrides: dict[str, Any] | None,
        *,
        max_tokens: int = 64,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        try:
            self.encoder, self.tokenizer = load_text_encoder(path, overrides, vocab_file=vocab)
        except BackboneError as e:
            raise ModelError(f"{name}: {e}") from None
        self.max_tokens = max_tokens
        self.width = hidden_size(self.encoder)
        if freeze_encoder:
            freeze(self.encoder)

    def tokens(self, texts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """(token states [B, S, H], attention mask [B, S] float) for non-empty `texts`."""
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        ids = enc["input_ids"].to(device)
        mask = enc["attention_mask"].to(device)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return states, mask.to(states.dtype)

    def pooled(self, texts: list[str], device: torch.device) -> Tensor:
        """Masked mean of the token states: [B, H]."""
        states, mask = self.tokens(texts, device)
        return (states * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def text_rows(texts: list[str | None]) -> list[int]:
    """Indices of the batch rows that have a non-empty transcript."""
    return [i for i, t in enumerate(texts) if t is not None and t.strip()]
