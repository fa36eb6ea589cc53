"""Cross-validation ensembles: which runs form one, how it is described, and its PyTorch copy round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.cv_ensemble import CVError, Member, cv_members, describe_cv
from training.models import MODEL_NAMES, build_model
from training.models.ensemble import MeanEnsemble
from training.pipeline import DataOptions

LABELS = ["neutral", "happy", "sad", "angry"]
TINY = {"channels": 16, "prosody_channels": 8, "blocks": 1, "heads": 2, "n_mels": 32}


def _fake_runs(monkeypatch: pytest.MonkeyPatch, splits: dict[str, str]) -> list[Path]:
    opts = {run: DataOptions(corpora=["ravdess=r", "tess=t"], split=s) for run, s in splits.items()}
    monkeypatch.setattr("training.cv_ensemble.run_data", lambda run: opts[str(run)])
    return [Path(r) for r in splits]


def test_cv_members_need_every_fold_equally_often(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _fake_runs(monkeypatch, {f"r{f}": f"devfold:3:{f}" for f in (2, 0, 1)})
    members = cv_members(runs)
    assert members is not None and [m.fold for m in members] == [0, 1, 2]
    assert [m.actors for m in members] == [tuple(range(1, 7)), tuple(range(7, 13)), tuple(range(13, 19))]
    assert cv_members(_fake_runs(monkeypatch, {"a": "default", "b": "default"})) is None
    two = cv_members(_fake_runs(monkeypatch, {f"{r}{f}": f"devfold:2:{f}" for r in "xy" for f in (1, 0)}))
    assert two is not None and [m.fold for m in two] == [0, 0, 1, 1]  # two recipes (or seeds) per fold
    for bad in (
        {"a": "devfold:3:0", "b": "devfold:3:1"},  # a fold missing
        {"a": "devfold:2:0", "b": "devfold:2:0"},  # a fold twice, the other never
        {"a": "devfold:2:0", "b": "devfold:2:0", "c": "devfold:2:1"},  # folds unequally often
        {"a": "devfold:2:0", "b": "default"},  # mixed
        {"a": "devfold:2:0", "b": "devfold:3:1"},  # mixed K
    ):
        with pytest.raises(CVError):
            cv_members(_fake_runs(monkeypatch, bad))


def test_describe_cv_names_folds_and_test() -> None:
    members = [Member(Path(f"runs/cv6_f{f}"), 6, f) for f in range(6)]
    speakers = {"train": [], "val": [], "test": [f"ravdess_{a}" for a in range(19, 25)]}
    texts = describe_cv(members, speakers, DataOptions(corpora=["ravdess=r", "tess=t"], merge_calm=False))
    val = texts["validation_set"]
    assert "fold 0: actors 1-3" in val and "fold 5: actors 16-18" in val and "out-of-fold" in val
    assert "ravdess, tess" in texts["training_data"] and "ravdess_24" in texts["training_data"]


def test_mean_ensemble_rebuilds_from_its_torch_copy(tmp_path: Path) -> None:
    from training.torch_copy import load_torch_copy, read_torch_config, save_torch_copy

    torch.manual_seed(0)
    ens = MeanEnsemble([build_model("realtime", TINY, LABELS) for _ in range(2)]).eval()
    save_torch_copy(ens, tmp_path)
    assert read_torch_config(tmp_path)["model"] == "mean-ensemble"
    copy = load_torch_copy(tmp_path)
    assert isinstance(copy, MeanEnsemble) and len(copy.members) == 2
    x = 0.1 * torch.randn(2, 16000)
    with torch.inference_mode():
        (a_logits, a_vad), (b_logits, b_vad) = ens(x), copy(x)
    torch.testing.assert_close(a_logits, b_logits)
    torch.testing.assert_close(a_vad, b_vad)
    assert "mean-ensemble" not in MODEL_NAMES  # built from trained members, never trained itself
    with pytest.raises(Exception, match="members"):
        build_model("mean-ensemble", {}, LABELS)
