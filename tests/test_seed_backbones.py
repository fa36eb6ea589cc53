"""Seed-model backbones loaded from local directories (offline, safetensors); losses by hand computation."""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
import torch

from tests.test_seed_models import LABELS, TINY_SPEECH, TINY_TEXT, harmonic, write_vocab
from training.models import build_model
from training.models.backbones import BackboneError, load_speech_encoder, load_text_encoder
from training.models.base import ModelError, ccc_loss
from training.models.losses import am_softmax_loss, discrepancy_loss

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_vocab(tmp_path_factory.mktemp("vocab"))


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_speech_backbone_loads_from_a_local_directory(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = {k: v for k, v in TINY_SPEECH.items() if not (kind == "wavlm" and k == "mask_time_prob")}
    saved = load_speech_encoder(kind, None, cfg).eval()
    saved.save_pretrained(tmp_path / kind, safe_serialization=True)
    assert (tmp_path / kind / "model.safetensors").is_file()
    loaded = load_speech_encoder(kind, tmp_path / kind).eval()
    x = torch.from_numpy(harmonic(150, 8000))[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).last_hidden_state, saved(x).last_hidden_state)


def test_ca_ser_builds_on_a_saved_backbone(tmp_path: Path) -> None:
    load_speech_encoder("wav2vec2", None, TINY_SPEECH).save_pretrained(tmp_path / "w2v")
    cfg = {"backbone": str(tmp_path / "w2v"), "layer": 2, "lstm_hidden": 8, "dim": 16, "heads": 2, "ff": 16}
    model = build_model("ca-ser", cfg, LABELS)
    assert model.speech.width == 32
    with pytest.raises(ModelError, match="backbone has 2 layers, cannot take layer"):
        build_model("ca-ser", {**cfg, "layer": 9}, LABELS)


def test_text_backbone_and_tokenizer_load_from_a_local_directory(vocab: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, tok = load_text_encoder(None, TINY_TEXT, vocab_file=vocab)
    model.save_pretrained(tmp_path / "bert")
    tok.save_pretrained(tmp_path / "bert")
    loaded, tok2 = load_text_encoder(tmp_path / "bert")
    ids = tok2(["what great news today"], return_tensors="pt")
    assert ids["input_ids"].shape[1] == 2 + 4  # [CLS] what great news today [SEP]
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).last_hidden_state, model.eval()(**ids).last_hidden_state)


def test_missing_or_invalid_backbone_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(BackboneError, match="path not found") as e:
        load_speech_encoder("wav2vec2", missing)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="not a model directory"):
        load_speech_encoder("hubert", tmp_path / "empty")
    load_speech_encoder("wav2vec2", None, TINY_SPEECH).save_pretrained(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"not a safetensors file" * 4)
    with pytest.raises(BackboneError, match="could not be loaded") as e3:
        load_speech_encoder("wav2vec2", tmp_path / "corrupt")
    assert "\n" not in str(e3.value)
    with pytest.raises(BackboneError, match="unknown speech backbone kind"):
        load_speech_encoder("whisper", None)
    with pytest.raises(BackboneError, match="no setting 'hiden_size'"):
        load_speech_encoder("wav2vec2", None, {"hiden_size": 8})
    with pytest.raises(ModelError, match="path not found") as e2:
        build_model("hump-cat", {"backbone": str(missing)}, LABELS)
    assert "\n" not in str(e2.value)
    with pytest.raises(ModelError, match="text vocabulary not found"):
        build_model("vad-fusion", {"backbone_config": TINY_SPEECH, "text_vocab": str(missing)}, LABELS)
    with pytest.raises(ModelError, match="unknown config key"):
        build_model("wavfusion", {"fusoin_layers": [1]}, LABELS)


def test_am_softmax_matches_hand_computation() -> None:
    cos = torch.tensor([[0.8, 0.1], [0.2, 0.5]])
    labels = torch.tensor([0, 1])
    s, m = 10.0, 0.3
    # row 0: logits (10*(0.8-0.3), 10*0.1) = (5, 1) -> -log(e^5 / (e^5 + e^1))
    # row 1: logits (10*0.2, 10*(0.5-0.3)) = (2, 2) -> -log(1/2)
    expected = (math.log(1 + math.exp(-4.0)) + math.log(2.0)) / 2
    got = float(am_softmax_loss(cos, labels, scale=s, margin=m))
    assert got == pytest.approx(expected, rel=1e-6)
    # unlabelled rows are ignored
    got2 = float(am_softmax_loss(torch.cat([cos, cos[:1]]), torch.tensor([0, 1, -1]), scale=s, margin=m))
    assert got2 == pytest.approx(expected, rel=1e-6)


def test_ccc_loss_matches_hand_computation() -> None:
    pred = torch.tensor([[1.0], [2.0], [3.0]])
    target = torch.tensor([[1.0], [3.0], [2.0]])
    # means 2, 2; variances (population) 2/3, 2/3; covariance (0*... ) = ((-1)(-1) + 0*1 + 1*0)/3 = 1/3
    # ccc = 2 * (1/3) / (2/3 + 2/3 + 0) = 0.5 -> loss 0.5
    assert float(ccc_loss(pred, target)) == pytest.approx(0.5, abs=1e-6)


def test_discrepancy_loss_matches_hand_computation() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 0.5], [3.0, 0.0]])
    labels = torch.tensor([0, 1])
    # same-class pairs: (a0,t0) d=0.5, (a1,t1) d=2 -> pull = (0.25 + 4) / 2 = 2.125
    # different-class: (a0,t1) d=3, (a1,t0) d=sqrt(1.25)~1.118 -> push = (0 + 0) / 2 with margin 1
    assert float(discrepancy_loss(a, t, labels, margin=1.0)) == pytest.approx(2.125, abs=1e-5)
    # margin 2: push = (0 + (2 - sqrt(1.25))^2) / 2
    expected = 2.125 + (2 - math.sqrt(1.25)) ** 2 / 2
    assert float(discrepancy_loss(a, t, labels, margin=2.0)) == pytest.approx(expected, abs=1e-5)
