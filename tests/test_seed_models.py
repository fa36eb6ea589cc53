"""The paper seed models (CA-SER, HuMP-CAT, vad-fusion, WavFusion) with tiny random transformers backbones:
shapes, learning, real ONNX export + ORT parity, engine inference on real speech, local backbone loading,
loss values against hand computation, transfer initialisation and offline speech recognition."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest
import soundfile as sf
import torch

from training.data.types import Batch
from training.models import build_model
from training.models.backbones import load_speech_encoder

torch.set_num_threads(1)
SR = 16000
LABELS = ["neutral", "happy", "sad", "angry"]
TINY_SPEECH: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_stride": (5, 4, 4),
    "conv_kernel": (10, 8, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "mask_time_prob": 0.0,
}
TINY_TEXT: dict[str, Any] = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
WORDS = ["i", "am", "so", "happy", "sad", "angry", "today", "this", "is", "great", "news", "what", "a", "day"]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_vocab(tmp_path_factory.mktemp("vocab"))


def write_vocab(directory: Path) -> Path:
    """A tiny WordPiece vocabulary: specials, letters (so any word tokenizes) and a few whole words."""
    path = directory / "vocab.txt"
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), *WORDS]
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n")
    return path


def tiny_config(name: str, vocab: Path) -> dict[str, Any]:
    common = {"backbone_config": TINY_SPEECH, "dropout": 0.0}
    text = {"text_vocab": str(vocab), "text_config": TINY_TEXT, "text_dropout": 0.0}
    return {
        "ca-ser": {**common, "layer": 2, "lstm_hidden": 16, "dim": 32, "heads": 2, "ff": 64},
        "hump-cat": {**common, "layers": [1, 2], "lstm_hidden": 16, "dim": 32, "heads": 2, "ff": 64,
                     "prosody_dim": 16, "am_margin": 0.2},
        "vad-fusion": {**common, **text, "bottleneck": 16, "hidden": 32},
        "wavfusion": {**common, **text, "aux_dim": 16, "heads": 2, "ff": 32, "null_tokens": 2,
                      "shared_dim": 8, "visual_dim": 6},
    }[name]  # fmt: skip


def harmonic(f0: float, n: int, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    x = amp * sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 6))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)
    return (x * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


def synthetic_batch(n: int = 8000) -> Batch:
    """Two 'classes' that differ in pitch and loudness, with matching V/A/D targets and transcripts."""
    f0s, labels = [110.0, 115.0, 260.0, 270.0], [0, 0, 1, 1]
    audio = np.stack(
        [
            harmonic(f, n, amp=0.1 if y == 0 else 0.5, seed=i)
            for i, (f, y) in enumerate(zip(f0s, labels, strict=True))
        ]
    )
    vad = torch.tensor([[-0.4, -0.5, -0.2], [-0.3, -0.6, -0.3], [0.6, 0.7, 0.4], [0.7, 0.6, 0.5]])
    return Batch(
        audio=torch.from_numpy(audio),
        lengths=torch.full((4,), n, dtype=torch.int64),
        labels=torch.tensor(labels),
        vad=vad,
        text=["i am so sad today", None, "what great news", "you did it again"],
        speakers=["a", "b", "a", "b"],
        corpora=["test"] * 4,
    )


MODELS = ["ca-ser", "hump-cat", "vad-fusion", "wavfusion"]


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_for_different_lengths(name: str, vocab: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name, vocab), LABELS).eval()
    n_logits = len(LABELS) if model.has_logits else 0
    for n in (6000, 16000, 27001):
        x = torch.from_numpy(np.stack([harmonic(150, n), harmonic(240, n, seed=1)]))
        with torch.no_grad():
            logits, vad = model(x)
        assert logits.shape == (2, n_logits) and vad.shape == (2, 3)
        assert torch.isfinite(logits).all() and (vad.abs() <= 1).all()


@pytest.mark.parametrize("name", MODELS)
def test_a_few_optimizer_steps_lower_the_loss(name: str, vocab: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name, vocab), LABELS).train()
    batch = synthetic_batch()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        loss, logs = model.compute_loss(batch)
        assert math.isfinite(logs["loss"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
@pytest.mark.parametrize("stable", [False, True])
def test_wavfusion_with_closed_gates_is_the_plain_backbone(kind: str, stable: bool, vocab: Path) -> None:
    """The hand-run layer loop must reproduce the transformers encoder exactly before gates open."""
    torch.manual_seed(0)
    cfg = tiny_config("wavfusion", vocab)
    speech = {
        **TINY_SPEECH,
        "do_stable_layer_norm": stable,
        "feat_extract_norm": "layer" if stable else "group",
    }
    cfg = {**cfg, "backbone_kind": kind, "backbone_config": speech}
    model = build_model("wavfusion", cfg, LABELS).eval()
    x = torch.from_numpy(np.stack([harmonic(150, 9000), harmonic(220, 9000, seed=2)]))
    with torch.no_grad():
        ours = model.encode(x, model._null(2), None)
        xn = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
        ref = model.encoder(xn).last_hidden_state
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_wavfusion_uses_text_and_visual_tokens(vocab: Path) -> None:
    torch.manual_seed(0)
    model = build_model("wavfusion", tiny_config("wavfusion", vocab), LABELS).eval()
    for block in model.blocks.values():  # open the gates so the auxiliary tokens matter
        torch.nn.init.constant_(block.attn_gate, 1.0)
    x = torch.from_numpy(np.stack([harmonic(150, 9000), harmonic(220, 9000, seed=2)]))
    with torch.no_grad():
        audio_only = model(x)[0]
        logits, vad, pooled, text_pooled, rows = model.forward_multimodal(
            x, ["what great news", None], visual=torch.randn(2, 5, 6)
        )
    assert logits.shape == (2, 4) and vad.shape == (2, 3) and pooled.shape == (2, 32)
    assert rows == [0] and text_pooled is not None and text_pooled.shape == (1, 32)
    assert not torch.allclose(logits, audio_only)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_vad_fusion_text_changes_the_prediction_and_logits_are_empty(fusion: str, vocab: Path) -> None:
    torch.manual_seed(0)
    model = build_model("vad-fusion", {**tiny_config("vad-fusion", vocab), "fusion": fusion}, LABELS).eval()
    assert not model.has_logits and model.has_vad
    x = torch.from_numpy(np.stack([harmonic(150, 9000), harmonic(220, 9000, seed=2)]))
    with torch.no_grad():
        logits, audio_only = model(x)
    assert logits.shape == (2, 0)
    torch.testing.assert_close(model.predict(x), audio_only)
    with_text = model.predict(x, ["i am so happy today", None])
    assert not torch.allclose(with_text[0], audio_only[0]) and torch.allclose(with_text[1], audio_only[1])


@pytest.mark.parametrize("name", MODELS)
def test_export_parity_and_engine_scores_real_speech(
    name: str, vocab: Path, tmp_path: Path, speech_wav: Path
) -> None:
    from engines import load_engine
    from engines.manifest import EngineManifest, EngineOutputs, Provenance
    from training.export import check_parity, export_engine

    torch.manual_seed(0)
    model = build_model(name, tiny_config(name, vocab), LABELS).eval()
    note = getattr(model, "engine_note", "")  # text-using models document their audio-only graph
    assert bool(note) == (name in ("vad-fusion", "wavfusion"))
    manifest = EngineManifest(
        name=f"seed-{name}",
        version="0.0.1",
        labels=tuple(LABELS),
        outputs=EngineOutputs(logits=model.has_logits, vad=model.has_vad),
        provenance=Provenance(
            training_data=f"none (untrained test model); {note}", license="test", command="pytest"
        ),
    )
    engine_dir = export_engine(model, tmp_path / "engine", manifest)
    parity = check_parity(model, engine_dir, lengths=(8000, 20000), batch_sizes=(1, 3))
    assert parity.passed, str(parity)

    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    assert note in engine.manifest.provenance.training_data
    speech, sr = sf.read(speech_wav, dtype="float32")
    assert sr == SR
    window = speech[SR : 3 * SR][None]  # 2 s of espeak speech, the engine's window
    res = engine.infer(window)
    with torch.no_grad():
        ref_logits, ref_vad = model(torch.from_numpy(window))
    assert res.vad is not None
    np.testing.assert_allclose(res.vad, ref_vad.numpy(), atol=1e-3)
    if model.has_logits:
        assert res.probabilities is not None and res.logits is not None
        np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(res.logits, ref_logits.numpy(), atol=1e-3)
    else:
        assert res.logits is None and res.probabilities is None


def test_hump_cat_transfer_init_with_a_different_label_count(
    vocab: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from training.checkpoints import save_checkpoint
    from training.pipeline import build as pipeline_build

    torch.manual_seed(0)
    source = build_model("hump-cat", tiny_config("hump-cat", vocab), LABELS)
    save_checkpoint(tmp_path / "src" / "best", source, {"model_name": "hump-cat"})
    with caplog.at_level(logging.WARNING, logger="training.checkpoints"):
        target = pipeline_build(
            "hump-cat", tiny_config("hump-cat", vocab), ["neutral", "angry"], backbone=None,
            init=tmp_path / "src" / "best",
        )  # fmt: skip
    assert "head.weight" in caplog.text
    src, dst = source.state_dict(), target.state_dict()
    assert dst["head.weight"].shape == (2, 32)
    torch.testing.assert_close(dst["stage2.attn.q.weight"], src["stage2.attn.q.weight"])
    torch.testing.assert_close(
        dst["speech.encoder.encoder.layers.1.attention.k_proj.weight"],
        src["speech.encoder.encoder.layers.1.attention.k_proj.weight"],
    )


def test_pocketsphinx_recognizer_transcribes_speech_offline(speech_wav: Path, vocab: Path) -> None:
    from training.models.vad_fusion import VadFusion
    from training.recognizer import PocketSphinxRecognizer, Recognizer, RecognizerError

    rec = PocketSphinxRecognizer()
    assert isinstance(rec, Recognizer)
    speech, sr = sf.read(speech_wav, dtype="float32")
    text = rec.transcribe(speech[: 5 * SR], sr)
    assert len(text.split()) >= 2 and text == text.lower()
    assert len(rec.transcribe(np.zeros(SR, dtype=np.float32)).split()) <= 1
    with pytest.raises(RecognizerError, match="model incomplete"):
        PocketSphinxRecognizer(model_dir=Path("/nonexistent"))

    torch.manual_seed(0)
    model = build_model("vad-fusion", tiny_config("vad-fusion", vocab), LABELS).eval()
    assert isinstance(model, VadFusion)
    x = torch.from_numpy(speech[SR : 3 * SR])[None]
    heard = model.predict(x, recognizer=rec)
    assert heard.shape == (1, 3) and (heard.abs() <= 1).all()


def test_checkpoint_round_trip_rebuilds_a_seed_model_from_json(vocab: Path, tmp_path: Path) -> None:
    """Configs survive JSON (tuples become lists) and the registry rebuilds an identical model."""
    from training.checkpoints import load_checkpoint_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("hump-cat", tiny_config("hump-cat", vocab), LABELS).eval()
    save_checkpoint(tmp_path / "best", model, {"model_name": "hump-cat"})
    again = load_checkpoint_model(tmp_path / "best")
    x = torch.from_numpy(harmonic(180, 8000))[None]
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], model(x)[0])


@pytest.mark.corpora
def test_trainer_runs_vad_fusion_on_ravdess(corpora_dir: Path, vocab: Path, tmp_path: Path) -> None:
    """The shared trainer drives a V/A/D-only seed model (selection by CCC) on real corpus audio."""
    from training.checkpoints import load_checkpoint_model
    from training.data.corpora import load_corpus
    from training.data.dataset import AudioDataset
    from training.trainer import TrainConfig, train

    utts = [u for u in load_corpus("ravdess", corpora_dir / "ravdess") if u.label in LABELS]
    actor = [u for u in utts if u.speaker == utts[0].speaker]  # one training actor (never a test actor)
    train_utts, val_utts = actor[::4][:8], actor[1::4][:4]
    assert len({u.label for u in train_utts}) > 1 and all(u.vad is not None for u in train_utts)
    assert any(u.transcript for u in train_utts)  # RAVDESS statements: the text branch is exercised
    train_ds = AudioDataset(train_utts, LABELS, crop_s=1.0, seed=0)
    val_ds = AudioDataset(val_utts, LABELS, seed=0)
    cfg = TrainConfig(
        epochs=1, batch_size=4, out_dir=tmp_path / "run", max_steps=2, warmup_steps=1, progress=False,
        threads=1, model_name="vad-fusion", samples_per_epoch=8,
    )  # fmt: skip
    model = build_model("vad-fusion", tiny_config("vad-fusion", vocab), LABELS)
    result = train(model, train_ds, val_ds, cfg)
    assert result.best_checkpoint.with_suffix(".safetensors").is_file()
    again = load_checkpoint_model(result.best_checkpoint)
    assert not again.has_logits and again.has_vad


def test_hump_cat_trains_on_a_single_row_batch(vocab: Path) -> None:
    """A last batch of one must not break the statistics normalisation."""
    torch.manual_seed(0)
    model = build_model("hump-cat", tiny_config("hump-cat", vocab), LABELS).train()
    b = synthetic_batch()
    one = Batch(
        b.audio[:1], b.lengths[:1], b.labels[:1], b.vad[:1], b.text[:1], b.speakers[:1], b.corpora[:1]
    )
    loss, logs = model.compute_loss(one)
    loss.backward()
    assert math.isfinite(logs["am_softmax"])


@pytest.mark.parametrize("stable", [False, True])
def test_speech_branch_drops_unused_layers_without_changing_the_chosen_one(
    stable: bool, tmp_path: Path
) -> None:
    from training.models.common import SpeechBranch

    torch.manual_seed(0)
    cfg = {**TINY_SPEECH, "num_hidden_layers": 3, "do_stable_layer_norm": stable}
    full = load_speech_encoder("wav2vec2", None, cfg).eval()
    full.save_pretrained(tmp_path / "w2v")
    branch = SpeechBranch("t", "wav2vec2", str(tmp_path / "w2v"), None, (2,), normalize=False).eval()
    assert len(branch.encoder.encoder.layers) == (3 if stable else 2)
    x = torch.from_numpy(harmonic(170, 8000))[None]
    with torch.no_grad():
        (ours,) = branch(x)
        ref = full(x, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(ours, ref)
