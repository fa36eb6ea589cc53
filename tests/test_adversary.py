"""Speaker-adversarial training (`training.adversary`): the reversed gradient, the speaker targets, the
mixed loss against a hand computation, and whole runs (resume, plain checkpoints) on the tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures_training import LABELS, TINY, assert_same_weights, crashed_run
from tests.fixtures_training import tiny_datasets as _datasets
from tests.fixtures_training import tiny_train_config as _cfg
from training.adversary import SpeakerAdversary, adversarial_loss, require_embedding, reverse_gradient
from training.checkpoints import CheckpointError, load_checkpoint_model
from training.data.dataset import collate
from training.data.types import Utterance
from training.mixup import permuted
from training.models import build_model
from training.models.base import EmotionModel, ModelError
from training.trainer import repeat_pad, train

torch.set_num_threads(1)


def test_reverse_gradient_is_identity_forward_and_negated_backward() -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))


def test_targets_name_known_speakers_and_ignore_new_ones(tiny_corpus: list[Utterance]) -> None:
    train_ds, val_ds = _datasets(tiny_corpus)
    adversary = SpeakerAdversary(4, ["synthetic/spk_a", "synthetic/spk_b"], scale=1.0)
    batch = collate([train_ds[0], train_ds[len(train_ds) - 1], val_ds[0]])
    assert batch.speakers == ["spk_a", "spk_b", "spk_c"]
    assert adversary.targets(batch).tolist() == [0, 1, -1]
    unseen = collate([val_ds[0], val_ds[1]])
    assert float(adversary.loss(torch.randn(2, 2), unseen)) == 0.0


def test_mixed_loss_matches_a_hand_computation(tiny_corpus: list[Utterance]) -> None:
    train_ds, _ = _datasets(tiny_corpus)
    batch = repeat_pad(collate([train_ds[i] for i in range(0, len(train_ds), 3)]))
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    adversary = SpeakerAdversary(16, ["synthetic/spk_a", "synthetic/spk_b"], scale=0.5)
    torch.manual_seed(7)
    loss, logs = adversarial_loss(model, adversary, batch, mixup_alpha=0.4)
    torch.manual_seed(7)  # the same weight and partners, by hand
    lam = float(torch.distributions.Beta(torch.tensor(0.4), torch.tensor(0.4)).sample())
    lam = max(lam, 1 - lam)
    order = torch.randperm(len(batch))
    h = model.embed(lam * batch.audio + (1 - lam) * batch.audio[order])
    logits, vad = model.heads(h)
    spk_logits = adversary.net(h)
    partner = permuted(batch, order)
    own, _ = model.loss_from_outputs(logits, vad, batch)
    other, _ = model.loss_from_outputs(logits, vad, partner)
    spk_own = torch.nn.functional.cross_entropy(spk_logits, adversary.targets(batch))
    spk_other = torch.nn.functional.cross_entropy(spk_logits, adversary.targets(partner))
    expected = lam * (own + spk_own) + (1 - lam) * (other + spk_other)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert logs["speaker_ce"] == pytest.approx(
        float((lam * spk_own + (1 - lam) * spk_other).detach()), abs=1e-5
    )


def test_speaker_term_pushes_the_model_the_other_way(tiny_corpus: list[Utterance]) -> None:
    """The encoder's gradient from the speaker term is -scale times the plain one; the head's is not."""
    train_ds, _ = _datasets(tiny_corpus)
    batch = repeat_pad(collate([train_ds[i] for i in range(8)]))
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS).eval()
    adversary = SpeakerAdversary(16, ["synthetic/spk_a", "synthetic/spk_b"], scale=0.3)
    target = adversary.targets(batch)
    grads = []
    for logits_of in (adversary.logits, adversary.net):  # reversed, then plain
        model.zero_grad()
        adversary.zero_grad()
        torch.nn.functional.cross_entropy(logits_of(model.embed(batch.audio)), target).backward()
        trunk = model.trunk[0].weight.grad
        head = adversary.net[0].weight.grad
        assert trunk is not None and head is not None
        grads.append((trunk.clone(), head.clone()))
    (trunk_rev, head_rev), (trunk_plain, head_plain) = grads
    assert torch.allclose(trunk_rev, -0.3 * trunk_plain, atol=1e-7)
    assert torch.allclose(head_rev, head_plain)


def test_runs_resume_and_leave_plain_checkpoints(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    train_ds, val_ds = _datasets(tiny_corpus)
    cfg = {"speaker_adversary": 0.2, "mixup": 0.4, "average_last": 2}
    torch.manual_seed(0)
    result = train(build_model("realtime", TINY, LABELS), train_ds, val_ds, _cfg(tmp_path / "a", **cfg))
    assert all("train_speaker_ce" in record for record in result.history)
    saved = load_file(str(tmp_path / "a" / "best.safetensors"))
    assert not any(k.startswith("adversary") for k in saved)
    plain = load_checkpoint_model(tmp_path / "a" / "best")  # loads strictly into the plain model
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["speaker_adversary"] == 0.2

    crashed_run(train_ds, val_ds, tmp_path / "b", 1, **cfg)
    (tmp_path / "b" / "last.adversary.safetensors").rename(tmp_path / "adversary.bak")
    with pytest.raises(CheckpointError, match="speaker adversary state"):
        train(
            build_model("realtime", TINY, LABELS), train_ds, val_ds, _cfg(tmp_path / "b", resume=True, **cfg)
        )
    (tmp_path / "adversary.bak").rename(tmp_path / "b" / "last.adversary.safetensors")
    train(build_model("realtime", TINY, LABELS), train_ds, val_ds, _cfg(tmp_path / "b", resume=True, **cfg))
    assert_same_weights(plain, load_checkpoint_model(tmp_path / "b" / "best"))


def test_models_without_an_embedding_are_refused() -> None:
    class Opaque(EmotionModel):
        def __init__(self) -> None:
            super().__init__(LABELS, None, has_logits=True, has_vad=False)

    with pytest.raises(ModelError, match="embed"):
        require_embedding(Opaque())
