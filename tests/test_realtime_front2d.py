"""The 2-D conv front end of `realtime` (`conv2d > 0`): shape contract with the prosody stream at any
length, kernels shared across frequency, real training steps, ONNX export parity, and checkpoints without
it still loading strictly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_helpers import SR, export_untrained, harmonic, training_losses
from training.models import build_model
from training.models.base import ModelError
from training.models.realtime import SpectralFront2d

torch.set_num_threads(1)
LABELS = ["neutral", "happy", "sad", "angry"]
TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1, "conv2d": 4}


@pytest.mark.parametrize("n", [100, 8000, 16160, 32123])
def test_any_length_runs_and_stays_finite(n: int) -> None:
    model = build_model("realtime", TINY, LABELS).eval()
    with torch.no_grad():
        logits, vad = model(torch.from_numpy(np.stack([harmonic(150.0, n / SR), np.zeros(n, np.float32)])))
    assert logits.shape == (2, 4) and vad.shape == (2, 3)
    assert torch.isfinite(logits).all() and torch.isfinite(vad).all()


@pytest.mark.parametrize("frames", [7, 8, 199, 200])
def test_front_halves_bands_twice_and_frames_once(frames: int) -> None:
    front = SpectralFront2d(16, 4).eval()
    out = front(torch.randn(2, 16, frames))
    assert out.shape == (2, 4 * 4, (frames + 1) // 2) and front.out_channels == 16


def test_kernels_are_shared_across_frequency() -> None:
    """A pattern moved up by 4 bands gives the same first-layer response moved up by 2 rows."""
    torch.manual_seed(0)
    front = SpectralFront2d(32, 4).eval()
    mel = torch.zeros(1, 32, 40)
    mel[0, 8:11, 10:20] = torch.randn(3, 10)
    shifted = torch.roll(mel, 4, dims=1)
    with torch.no_grad():
        a = front.conv1(mel.unsqueeze(1))
        b = front.conv1(shifted.unsqueeze(1))
    torch.testing.assert_close(b[:, :, 2 + 2 : 14], a[:, :, 2:12])


def test_bands_must_divide_by_four() -> None:
    with pytest.raises(ModelError, match="divisible by 4"):
        build_model("realtime", {**TINY, "n_mels": 18}, LABELS)


def test_front_is_additive_and_old_checkpoints_load_strictly() -> None:
    plain_cfg = {k: v for k, v in TINY.items() if k != "conv2d"}
    plain = build_model("realtime", plain_cfg, LABELS)
    assert not any(k.startswith("front2d.") for k in plain.state_dict())
    assert any(k.startswith("front2d.") for k in build_model("realtime", TINY, LABELS).state_dict())
    build_model("realtime", plain_cfg, LABELS).load_state_dict(plain.state_dict(), strict=True)


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS)
    losses = training_losses(model)
    assert losses[-1] < 0.5 * losses[0]


def test_export_parity_at_several_lengths_and_batches(tmp_path: Path) -> None:
    from engines import load_engine

    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    engine_dir, parity = export_untrained(model, tmp_path / "eng")
    assert parity.passed, str(parity)
    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    for batch, seconds in ((1, 0.5), (3, 2.0), (2, 3.3)):
        x = np.stack([harmonic(90.0 + 70.0 * i, seconds) for i in range(batch)])
        res = engine.infer(x)
        with torch.no_grad():
            ref_logits, ref_vad = model(torch.from_numpy(x))
        assert res.logits is not None and res.vad is not None
        np.testing.assert_allclose(res.logits, ref_logits.numpy(), atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(res.vad, ref_vad.numpy(), atol=1e-3)
