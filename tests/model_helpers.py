"""Helpers shared by the `realtime` model tests: a harmonic test voice, a few real training steps, and the
export of an untrained model as an engine (with its PyTorch/ONNX Runtime parity report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.models.base import EmotionModel

SR = 16000
UNTRAINED = {"training_data": "none (untrained test model)", "license": "test", "command": "pytest"}


def harmonic(f0: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    """Five harmonics of f0 at 1/k amplitudes: a voiced, pitched signal of `seconds` (rounded to samples)."""
    t = np.arange(round(seconds * SR)) / SR
    wave = np.sum([np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)], axis=0)
    return (amp * wave).astype(np.float32)


def training_losses(model: EmotionModel, steps: int = 25) -> list[float]:
    """Cross-entropy after each of `steps` Adam steps on eight tones, two per class (pitch = class)."""
    x = torch.from_numpy(np.stack([harmonic(f, 1.0) for f in (100.0, 150.0, 220.0, 300.0)] * 2))
    y = torch.tensor([0, 1, 2, 3] * 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        logits, _vad = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def export_untrained(model: torch.nn.Module, out: Path) -> tuple[Path, Any]:
    """(engine dir, parity report) of `model` exported as engine `t` 0.0.1."""
    from training.pipeline import export_model_engine

    return export_model_engine(model, out, name="t", version="0.0.1", provenance=UNTRAINED)
