"""Typed records shared by the training code: one utterance of a corpus and one padded batch.

Kept dependency-light (torch only for the Batch tensors) because readers, splits, datasets, models,
the trainer and the evaluator all import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Utterance:
    """One labelled recording: where it is, who spoke, and its emotion annotations.

    `label` is the common label (see `training.data.labels.COMMON_LABELS`) or None when the corpus label has
    no common equivalent; `vad` is (valence, arousal, dominance) in [-1, 1] or None; `intensity` is in [0, 1]
    where the corpus annotates it.
    """

    path: Path
    corpus: str
    speaker: str
    label: str | None
    original_label: str | None
    vad: tuple[float, float, float] | None = None
    intensity: float | None = None
    transcript: str | None = None
    gender: str | None = None


@dataclass
class Batch:
    """A padded mini-batch. labels -1 = no label for that item; vad NaN = no V/A/D target."""

    audio: torch.Tensor  # [B, N] float32
    lengths: torch.Tensor  # [B] int64, valid samples per row
    labels: torch.Tensor  # [B] int64
    vad: torch.Tensor  # [B, 3] float32
    text: list[str | None]
    speakers: list[str]
    corpora: list[str]

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """Move the tensors to a device (lists stay as they are)."""
        return Batch(
            audio=self.audio.to(device),
            lengths=self.lengths.to(device),
            labels=self.labels.to(device),
            vad=self.vad.to(device),
            text=self.text,
            speakers=self.speakers,
            corpora=self.corpora,
        )
