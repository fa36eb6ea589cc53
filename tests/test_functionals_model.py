"""The utterance-level functionals branch of `realtime` (`functionals > 0`): real signals, real training
steps, real ONNX export with digital silence, and backward compatibility with branch-less checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_helpers import SR, export_untrained, harmonic, training_losses
from training.models import build_model
from training.models.functionals import Functionals, soft_quantiles
from training.prosody import Prosody

torch.set_num_threads(1)
LABELS = ["neutral", "happy", "sad", "angry"]
TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1, "functionals": 8}


def functionals_of(audio: np.ndarray) -> torch.Tensor:
    from training.frontend import LogMel

    x = torch.from_numpy(audio)[None]
    return Functionals(16)(Prosody()(x), LogMel(16)(x))[0]


def test_soft_quantiles_track_weighted_quantiles() -> None:
    x = torch.linspace(0.0, 10.0, 201)[None]
    q = soft_quantiles(x, torch.ones_like(x), (0.2, 0.5, 0.8))[0]
    np.testing.assert_allclose(q.numpy(), [2.0, 5.0, 8.0], atol=0.3)
    w = (x > 5.0).float()  # only the upper half counts
    q = soft_quantiles(x, w, (0.5,))[0]
    assert float(q[0]) == pytest.approx(7.5, abs=0.3)


def test_functionals_see_pitch_and_ignore_gain() -> None:
    low, high = functionals_of(harmonic(110.0, 2.0)), functionals_of(harmonic(260.0, 2.0))
    n = Functionals(16)
    assert low.shape == (n.n_out,)
    f0_q = slice(4 * 6 + 2 * 12, 4 * 6 + 2 * 12 + 3)  # pitch quantiles (log Hz)
    np.testing.assert_allclose(np.exp(low[f0_q].numpy()), 110.0, rtol=0.06)
    np.testing.assert_allclose(np.exp(high[f0_q].numpy()), 260.0, rtol=0.06)
    # a mic's gain shifts nothing (broadband signal, so no mel band sits on the log floor)
    rng = np.random.default_rng(0)
    voice = harmonic(110.0, 2.0) + (0.02 * rng.standard_normal(2 * SR)).astype(np.float32)
    loud, quiet = functionals_of(voice), functionals_of(voice / 6.0)
    np.testing.assert_allclose(quiet.numpy(), loud.numpy(), atol=0.05)


@pytest.mark.parametrize("n", [100, 8000, 32000])
def test_functionals_are_finite_on_digital_silence_and_any_length(n: int) -> None:
    feats = functionals_of(np.zeros(n, dtype=np.float32))
    assert torch.isfinite(feats).all()
    model = build_model("realtime", TINY, LABELS).eval()
    logits, vad = model(torch.zeros(2, n))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all() and torch.isfinite(vad).all()


def test_branch_is_additive_and_old_checkpoints_load_strictly() -> None:
    plain = build_model("realtime", {k: v for k, v in TINY.items() if k != "functionals"}, LABELS)
    assert not any(k.startswith("func.") for k in plain.state_dict())
    with_func = build_model("realtime", TINY, LABELS)
    assert any(k.startswith("func.") for k in with_func.state_dict())
    again = build_model("realtime", {k: v for k, v in TINY.items() if k != "functionals"}, LABELS)
    again.load_state_dict(plain.state_dict(), strict=True)


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS)
    losses = training_losses(model)
    assert losses[-1] < 0.5 * losses[0]


def test_export_parity_with_digital_silence(tmp_path: Path) -> None:
    from engines import load_engine

    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    engine_dir, parity = export_untrained(model, tmp_path / "eng")
    assert parity.passed, str(parity)
    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    x = np.stack([harmonic(140, 2.0), harmonic(260, 2.0), harmonic(90, 2.0)])
    x[1, 5000:20000] = 0.0  # gated mic
    x[2] = 0.0  # all digital silence
    res = engine.infer(x)
    assert res.logits is not None and res.vad is not None
    with torch.no_grad():
        ref_logits, ref_vad = model(torch.from_numpy(x))
    assert np.isfinite(res.logits).all() and np.isfinite(res.vad).all()
    np.testing.assert_allclose(res.logits, ref_logits.numpy(), atol=1e-3)
    np.testing.assert_allclose(res.vad, ref_vad.numpy(), atol=1e-3)


def test_mean_ensemble_averages_members_and_exports(tmp_path: Path) -> None:
    from engines import load_engine
    from training.models.base import ModelError
    from training.models.ensemble import MeanEnsemble

    torch.manual_seed(0)
    members = [build_model("realtime", TINY, LABELS).eval() for _ in range(2)]
    ens = MeanEnsemble(members).eval()
    x = torch.from_numpy(np.stack([harmonic(140, 2.0), harmonic(260, 2.0)]))
    with torch.no_grad():
        logits, vad = ens(x)
        outs = [m(x) for m in members]
    probs = torch.softmax(logits, dim=-1)
    member_logp = torch.stack([torch.log_softmax(lo, dim=-1) for lo, _ in outs])
    expected = torch.softmax(member_logp.mean(dim=0), dim=-1)  # normalised geometric mean
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(vad, (outs[0][1] + outs[1][1]) / 2)
    with pytest.raises(ModelError, match="share labels"):
        MeanEnsemble([members[0], build_model("realtime", TINY, LABELS[:3])])
    engine_dir, parity = export_untrained(ens, tmp_path / "ens")
    assert parity.passed, str(parity)
    res = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1).infer(
        np.zeros((2, 32000), np.float32)
    )
    assert res.logits is not None and np.isfinite(res.logits).all()
