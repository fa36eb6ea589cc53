"""Regularisers for small corpora: weight averaging over the last epochs (`training.averaging`) and mixup
(`training.mixup`), on the tiny synthetic corpus of tests/fixtures_training.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures_training import LABELS, TINY, assert_same_weights, crashed_run
from tests.fixtures_training import tiny_datasets as _datasets
from tests.fixtures_training import tiny_train_config as _cfg
from training.checkpoints import load_checkpoint_model
from training.data.dataset import collate
from training.data.types import Utterance
from training.models import build_model
from training.trainer import repeat_pad, train

torch.set_num_threads(1)


def test_average_last_saves_the_mean_of_the_last_epochs_and_resumes(
    tiny_corpus: list[Utterance], tmp_path: Path
) -> None:
    train_ds, val_ds = _datasets(tiny_corpus)
    seen: list[dict[str, torch.Tensor]] = []
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS)

    def keep(record: dict[str, object]) -> None:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    result = train(model, train_ds, val_ds, _cfg(tmp_path / "a", average_last=2), on_epoch=keep)
    assert result.best_epoch == 2 and len(seen) == 3
    averaged = load_checkpoint_model(tmp_path / "a" / "best")
    for name, value in averaged.state_dict().items():
        if value.is_floating_point():
            expected = (seen[1][name].double() + seen[2][name].double()) / 2
            assert torch.allclose(value.double(), expected, atol=1e-6), name
    meta = json.loads((tmp_path / "a" / "best.json").read_text())
    assert meta["select_on"] == "mean of the last 2 epochs' weights"
    assert "val_ua" in meta["metrics"] and meta["metrics"]["averaged_epochs"] == 2

    crashed_run(train_ds, val_ds, tmp_path / "b", 1, average_last=2)
    resumed = build_model("realtime", TINY, LABELS)
    train(resumed, train_ds, val_ds, _cfg(tmp_path / "b", average_last=2, resume=True))
    assert_same_weights(averaged, load_checkpoint_model(tmp_path / "b" / "best"))


def test_mixup_loss_is_the_mix_of_both_clips_losses(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    from training.mixup import mixup_loss, permuted

    train_ds, _ = _datasets(tiny_corpus)
    batch = repeat_pad(collate([train_ds[i] for i in range(8)]))
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    torch.manual_seed(5)
    loss, _ = mixup_loss(model, batch, alpha=0.4)
    torch.manual_seed(5)  # the same weight and partners, recomputed by hand
    lam = float(torch.distributions.Beta(torch.tensor(0.4), torch.tensor(0.4)).sample())
    lam = max(lam, 1 - lam)
    order = torch.randperm(len(batch))
    logits, vad = model(lam * batch.audio + (1 - lam) * batch.audio[order])
    own, _ = model.loss_from_outputs(logits, vad, batch)
    other, _ = model.loss_from_outputs(logits, vad, permuted(batch, order))
    assert 0.5 <= lam <= 1.0 and not torch.equal(order, torch.arange(len(batch)))
    assert torch.allclose(loss, lam * own + (1 - lam) * other)
    result = train(model.train(), train_ds, None, _cfg(tmp_path / "m", epochs=6, mixup=0.4))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_mixup_refuses_models_with_extra_inputs(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    from training.models.base import ModelError

    class WithText(type(build_model("realtime", TINY, LABELS))):  # type: ignore[misc]
        def compute_loss(self, batch):  # type: ignore[no-untyped-def]
            return super().compute_loss(batch)

    model = WithText(LABELS, build_model("realtime", TINY, LABELS).cfg)
    train_ds, _ = _datasets(tiny_corpus)
    with pytest.raises(ModelError, match="mixup needs an audio-only model"):
        train(model, train_ds, None, _cfg(tmp_path / "t", mixup=0.4))
