"""Training fixtures: a tiny synthetic two-emotion corpus written to disk (three speakers), its datasets, a
fast training config, and a crash-after-epoch hook and weight comparison for resume tests (registered in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.data.dataset import AudioDataset
from training.data.types import Utterance
from training.models import build_model
from training.trainer import TrainConfig, train

SR = 16000
LABELS = ["sad", "angry"]
TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1, "dropout": 0.0}


def voice(f0: float, seconds: float, rng: np.random.Generator, bright: bool) -> np.ndarray:
    """A gliding harmonic voice: 'angry' is high, loud and bright; 'sad' is low, soft and dull."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    phase = 2 * np.pi * np.cumsum(f) / SR
    harmonics = range(1, 16 if bright else 4)
    x = sum(np.sin(k * phase) / (k ** (0.5 if bright else 2.0)) for k in harmonics)
    x = x / np.max(np.abs(x)) * (0.5 if bright else 0.1) + 0.003 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Utterance]:
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    utts = []
    for spk in ("spk_a", "spk_b", "spk_c"):
        for i in range(6):
            for label in LABELS:
                angry = label == "angry"
                f0 = rng.uniform(220, 300) if angry else rng.uniform(90, 130)
                x = voice(f0, rng.uniform(0.6, 1.2), rng, bright=angry)
                path = d / f"{spk}_{label}_{i}.wav"
                sf.write(path, x, SR, subtype="PCM_16")
                vad = (-0.5, 0.6, 0.3) if angry else (-0.6, -0.3, -0.3)
                utts.append(Utterance(path, "synthetic", spk, label, label, vad=vad))
    return utts


def tiny_datasets(utts: list[Utterance]) -> tuple[AudioDataset, AudioDataset]:
    train_u = [u for u in utts if u.speaker != "spk_c"]
    val_u = [u for u in utts if u.speaker == "spk_c"]
    return AudioDataset(train_u, LABELS, crop_s=0.5, trim_db=None), AudioDataset(val_u, LABELS, trim_db=None)


def tiny_train_config(out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        epochs=3,
        lr=3e-3,
        batch_size=8,
        samples_per_epoch=32,
        warmup_steps=2,
        seed=1,
        out_dir=out,
        progress=False,
        model_name="realtime",
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


class Crash(Exception):
    """Raised by `crash_after` to stop a training run as a killed process would."""


def crash_after(epoch: int) -> Callable[[dict[str, object]], None]:
    """An `on_epoch` hook that crashes once `epoch` has finished (its checkpoints are written)."""

    def hook(record: dict[str, object]) -> None:
        if record["epoch"] == epoch:
            raise Crash

    return hook


def crashed_run(train_ds: AudioDataset, val_ds: AudioDataset, out: Path, epoch: int, **kw: object) -> None:
    """A run of a fresh seed-0 model killed once `epoch` has finished (its checkpoints written)."""
    torch.manual_seed(0)
    with pytest.raises(Crash):
        model = build_model("realtime", TINY, LABELS)
        train(model, train_ds, val_ds, tiny_train_config(out, **kw), on_epoch=crash_after(epoch))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Bit-identical state dicts, tensor by tensor."""
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
