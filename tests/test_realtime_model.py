"""The `realtime` model and its prosody features: real signals, real ONNX export and ORT inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_helpers import SR, export_untrained, harmonic
from training.models import build_model
from training.models.base import ModelError, ccc_loss
from training.prosody import Prosody, n_frames

torch.set_num_threads(1)
LABELS = ["neutral", "happy", "sad", "angry"]
TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1}


@pytest.mark.parametrize("f0", [80.0, 120.0, 200.0, 300.0, 450.0])
def test_prosody_pitch_tracks_a_harmonic_voice(f0: float) -> None:
    feats = Prosody()(torch.from_numpy(harmonic(f0))[None])[0]
    inner = feats[:, 10:-10]  # away from the zero-padded edges
    est = float(np.median(np.exp(inner[2].numpy())))
    assert abs(est - f0) / f0 < 0.06
    assert float(inner[1].mean()) > 0.9  # strongly voiced


def test_prosody_noise_is_unvoiced_and_bright() -> None:
    rng = np.random.default_rng(0)
    noise = torch.from_numpy((0.1 * rng.standard_normal(SR)).astype(np.float32))[None]
    tone = torch.from_numpy(harmonic(150.0))[None]
    fn, ft = Prosody()(noise)[0, :, 10:-10], Prosody()(tone)[0, :, 10:-10]
    assert float(fn[1].mean()) < 0.5 < float(ft[1].mean())  # voicing
    assert float(fn[3].mean()) > 5 * float(ft[3].mean())  # zero-crossing rate
    assert float(fn[4].mean()) > float(ft[4].mean())  # RMS frequency (centroid)
    assert float(fn[5].mean()) < float(ft[5].mean())  # less energy below 1.8 kHz


@pytest.mark.parametrize("n", [1, 159, 160, 640, 8000, 32001])
def test_prosody_frames_match_the_log_mel_for_any_length(n: int) -> None:
    feats = Prosody()(torch.zeros(2, n))
    assert feats.shape == (2, 6, n_frames(n))
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("n", [100, 8000, 32000, 40001])
def test_realtime_outputs_for_any_length(n: int) -> None:
    model = build_model("realtime", TINY, LABELS).eval()
    logits, vad = model(torch.from_numpy(np.stack([harmonic(150, n / SR), harmonic(220, n / SR)])))
    assert logits.shape == (2, 4) and vad.shape == (2, 3)
    assert torch.isfinite(logits).all() and (vad.abs() <= 1).all()


def test_realtime_is_deterministic_in_eval_and_masks_in_training() -> None:
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS)
    x = torch.from_numpy(np.stack([harmonic(150, 2.0)] * 2))
    model.eval()
    a, b = model(x)[0], model(x)[0]
    assert torch.equal(a, b)
    model.train()
    mel = torch.randn(4, 16, 200)
    masked = model._spec_augment(mel)
    assert (masked == 0).any() and not torch.equal(masked, mel)


def test_registry_errors_are_one_line() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'") as e:
        build_model("nope", {}, LABELS)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="unknown config key"):
        build_model("realtime", {"widht": 3}, LABELS)


def test_ccc_loss_is_zero_for_perfect_and_ignores_missing_targets() -> None:
    t = torch.tensor([[0.1, 0.5, -0.2], [0.7, -0.1, 0.3], [-0.4, 0.2, 0.0], [0.0, 0.0, 0.9]])
    assert float(ccc_loss(t.clone(), t)) == pytest.approx(0.0, abs=1e-5)
    assert float(ccc_loss(-t, t)) > 1.5
    partial = t.clone()
    partial[0] = float("nan")
    assert torch.isfinite(ccc_loss(t, partial))


def test_export_parity_and_engine_inference(tmp_path: Path) -> None:
    from engines import load_engine

    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    engine_dir, parity = export_untrained(model, tmp_path / "eng")
    assert parity.passed, str(parity)
    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    assert list(engine.labels) == LABELS
    x = np.stack([harmonic(140, 2.0), harmonic(260, 2.0), harmonic(90, 2.0)])
    res = engine.infer(x)
    assert res.probabilities is not None and res.vad is not None
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref_logits, ref_vad = model(torch.from_numpy(x))
    np.testing.assert_allclose(res.logits, ref_logits.numpy(), atol=1e-3)
    np.testing.assert_allclose(res.vad, ref_vad.numpy(), atol=1e-3)
    gated = x.copy()
    gated[:, 5000:20000] = 0.0  # digital silence (TTS, gated mics): tiny epsilons must survive export
    gated[2] = 0.0
    res = engine.infer(gated)
    assert res.logits is not None and res.vad is not None
    assert np.isfinite(res.logits).all() and np.isfinite(res.vad).all()
