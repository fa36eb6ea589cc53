"""A tiny, deterministic emotion engine for tests: real export path, no dependency on the shipped model.

The model is small on purpose (exporting is the slow part) but structurally like a real engine:
in-graph log-mel front end, per-utterance normalisation, two conv layers, mean pooling over time,
a ``logits`` head and a tanh ``vad`` head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from engines.manifest import EngineManifest, EngineOutputs, Provenance
from training.export import export_engine
from training.frontend import LogMel

DEFAULT_LABELS = ("neutral", "happy", "sad", "angry")


class TinyEmotionNet(nn.Module):
    """log-mel(32) -> mean-normalise -> conv(16) -> conv(16) -> mean over time -> heads."""

    def __init__(self, n_labels: int, logits: bool, vad: bool, n_mels: int = 32, width: int = 16) -> None:
        super().__init__()
        self.front = LogMel(n_mels)
        self.body = nn.Sequential(
            nn.Conv1d(n_mels, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, width, kernel_size=3, padding=1),
            nn.ReLU(),
        )
        self.logits_head = nn.Linear(width, n_labels) if logits else None
        self.vad_head = nn.Linear(width, 3) if vad else None

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.front(audio)
        feats = feats - feats.mean(dim=2, keepdim=True)
        pooled = self.body(feats).mean(dim=2)
        out: dict[str, torch.Tensor] = {}
        if self.logits_head is not None:
            out["logits"] = self.logits_head(pooled)
        if self.vad_head is not None:
            out["vad"] = torch.tanh(self.vad_head(pooled))
        return out


def tiny_model(
    labels: Sequence[str] = DEFAULT_LABELS, logits: bool = True, vad: bool = True, seed: int = 0
) -> TinyEmotionNet:
    """The seeded model itself (for parity checks against the exported engine)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyEmotionNet(len(labels), logits=logits, vad=vad)
    return model.eval()


def tiny_manifest(
    labels: Sequence[str] = DEFAULT_LABELS,
    logits: bool = True,
    vad: bool = True,
    window_s: float = 2.0,
    hop_s: float = 0.5,
) -> EngineManifest:
    return EngineManifest(
        name="tiny-test",
        version="0.0.1",
        labels=tuple(labels) if logits else (),
        outputs=EngineOutputs(logits=logits, vad=vad),
        window_s=window_s,
        hop_s=hop_s,
        min_window_s=min(0.5, window_s),
        max_window_s=max(8.0, window_s),
        padding="repeat",
        provenance=Provenance(
            training_data="none (random weights)",
            code_version="tests/tiny_engine.py",
            license="Apache-2.0",
            command="build_tiny_engine",
        ),
    )


def build_tiny_engine(
    out_dir: Path,
    labels: Sequence[str] = DEFAULT_LABELS,
    logits: bool = True,
    vad: bool = True,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    seed: int = 0,
) -> Path:
    """Export a seeded tiny engine to ``out_dir`` (model.onnx + engine.json); returns ``out_dir``."""
    torch.set_num_threads(1)
    model = tiny_model(labels, logits=logits, vad=vad, seed=seed)
    manifest = tiny_manifest(labels, logits=logits, vad=vad, window_s=window_s, hop_s=hop_s)
    return export_engine(model, Path(out_dir), manifest)
