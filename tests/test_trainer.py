"""Trainer, checkpoints and the training CLI on a tiny synthetic two-emotion corpus written to disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.checkpoints import CheckpointError, load_checkpoint_model, resolve_checkpoint
from training.data.dataset import AudioDataset, collate
from training.data.types import Utterance
from training.models import build_model
from training.trainer import TrainConfig, repeat_pad, train

torch.set_num_threads(1)
SR = 16000
LABELS = ["sad", "angry"]
TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1, "dropout": 0.0}
REPO = Path(__file__).resolve().parents[1]


def _voice(f0: float, seconds: float, rng: np.random.Generator, bright: bool) -> np.ndarray:
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
                x = _voice(f0, rng.uniform(0.6, 1.2), rng, bright=angry)
                path = d / f"{spk}_{label}_{i}.wav"
                sf.write(path, x, SR, subtype="PCM_16")
                vad = (-0.5, 0.6, 0.3) if angry else (-0.6, -0.3, -0.3)
                utts.append(Utterance(path, "synthetic", spk, label, label, vad=vad))
    return utts


def _datasets(utts: list[Utterance]) -> tuple[AudioDataset, AudioDataset]:
    train_u = [u for u in utts if u.speaker != "spk_c"]
    val_u = [u for u in utts if u.speaker == "spk_c"]
    return AudioDataset(train_u, LABELS, crop_s=0.5, trim_db=None), AudioDataset(val_u, LABELS, trim_db=None)


def _cfg(out: Path, **kw: object) -> TrainConfig:
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


def test_training_lowers_the_loss_and_saves_config(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("realtime", TINY, LABELS)
    train_ds, val_ds = _datasets(tiny_corpus)
    result = train(model, train_ds, val_ds, _cfg(tmp_path / "run", epochs=6))
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_checkpoint.is_file() and result.steps == 6 * 4
    assert "val_ua" in result.history[-1]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["train"]["epochs"] == 6 and cfg["model"]["name"] == "realtime"
    assert cfg["model"]["labels"] == LABELS and cfg["model"]["config"]["channels"] == 16


def test_resume_reproduces_an_uninterrupted_run(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    train_ds, val_ds = _datasets(tiny_corpus)
    torch.manual_seed(0)
    straight = build_model("realtime", TINY, LABELS)
    train(straight, train_ds, val_ds, _cfg(tmp_path / "a"))

    class Crash(Exception):
        pass

    def crash_after_first(record: dict[str, object]) -> None:
        if record["epoch"] == 0:
            raise Crash

    torch.manual_seed(0)
    first = build_model("realtime", TINY, LABELS)
    with pytest.raises(Crash):
        train(first, train_ds, val_ds, _cfg(tmp_path / "b"), on_epoch=crash_after_first)
    torch.manual_seed(123)  # a fresh process: different init, weights must come from the checkpoint
    resumed = build_model("realtime", TINY, LABELS)
    result = train(resumed, train_ds, val_ds, _cfg(tmp_path / "b", resume=True))
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_roundtrip_restores_identical_weights(
    tiny_corpus: list[Utterance], tmp_path: Path
) -> None:
    train_ds, val_ds = _datasets(tiny_corpus)
    model = build_model("realtime", TINY, LABELS)
    train(model, train_ds, val_ds, _cfg(tmp_path / "r", epochs=1))
    loaded = load_checkpoint_model(tmp_path / "r" / "last")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.labels == LABELS and not loaded.training
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "r" / "last.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint_model(tmp_path / "r" / "last")


def test_repeat_pad_replaces_zero_padding(tiny_corpus: list[Utterance]) -> None:
    ds = AudioDataset(tiny_corpus[:2], LABELS, trim_db=None)
    batch = repeat_pad(collate([ds[0], ds[1]]))
    for row, n in zip(batch.audio, batch.lengths.tolist(), strict=True):
        full = row.shape[0]
        if n < full:
            torch.testing.assert_close(row[n : 2 * n][: full - n], row[: full - n][:n])
        assert float(row[-100:].abs().sum()) > 0


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], capture_output=True, text=True, cwd=REPO, timeout=240
    )


def test_cli_empty_corpus_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "ravdess").mkdir()
    r = _cli("train", "--corpus", f"ravdess={tmp_path / 'ravdess'}", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotrack: error:") and "ravdess" in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_unknown_model_is_a_one_line_error(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,speaker,label\n" + "".join(f"{u.path},{u.speaker},{u.label}\n" for u in tiny_corpus)
    )
    r = _cli("train", "--model", "gpt5", "--corpus", f"csv={manifest}", "--split", "speakers=spk_c",
             "--labels", "sad,angry", "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'gpt5'" in lines[0], r.stderr


def test_cli_bad_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochz = 3\n")
    r = _cli("train", str(cfg), "--corpus", "ravdess=/nonexistent", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "train.epochz" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_export_writes_an_engine_and_prints_parity(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    from engines import load_engine

    train_ds, val_ds = _datasets(tiny_corpus)
    model = build_model("realtime", TINY, LABELS)
    train(model, train_ds, val_ds, _cfg(tmp_path / "run", epochs=1))
    r = _cli("export", str(tmp_path / "run"), "--out", str(tmp_path / "engine"), "--name", "tiny")
    assert r.returncode == 0, r.stderr
    assert "parity PASS" in r.stdout and "tolerance" in r.stdout
    engine = load_engine(tmp_path / "engine", backend="onnxruntime-cpu", intra_op_threads=1)
    assert list(engine.labels) == LABELS and engine.manifest.name == "tiny"
    assert engine.manifest.provenance.command.startswith("python -m training export")
    bad = _cli("export", str(tmp_path / "nothing"), "--out", str(tmp_path / "e2"))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "no checkpoint" in bad.stderr

    # the same checkpoint through `emotrack export --json`: one JSON object on stdout, nothing else
    r = _emotrack("export", str(tmp_path / "run"), "--out", str(tmp_path / "engine2"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["engine_dir"] == str(tmp_path / "engine2") and (tmp_path / "engine2" / "engine.json").is_file()
    parity = doc["parity"]
    assert parity["passed"] is True and parity["tolerance"] > 0 and parity["cases"] > 0
    assert set(parity["max_abs_diff"]) == {"logits", "vad"}
    assert all(0 <= v <= parity["tolerance"] for v in parity["max_scaled_diff"].values())
    # build-trt --json without a GPU/TensorRT: still the one-line error and a non-zero exit, no JSON
    if not _has_trt_gpu():
        r = _emotrack("build-trt", str(tmp_path / "engine2"), "--json")
        assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("emotrack: error:"), r.stderr


def _emotrack(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=240
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _has_trt_gpu() -> bool:
    from engines.trt import probe_trt_host

    return probe_trt_host() is not None


def test_emotrack_training_commands_say_how_to_install_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from streamer.commands._training import MISSING, run_training_command

    def needs_torch(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    assert run_training_command(argparse.Namespace(), needs_torch) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and MISSING in err[0]

    def other_bug(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'nonexistent_internal'", name="nonexistent_internal")

    with pytest.raises(ModuleNotFoundError):  # not a missing extra: a real bug must not be disguised
        run_training_command(argparse.Namespace(), other_bug)


def test_emotrack_train_is_wired_into_the_daemon_cli(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "train", "--model", "realtime", "--corpus",
         f"ravdess={tmp_path / 'none'}", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO, timeout=240,
    )  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotrack: error:") and "none" in lines[0], r.stderr


def test_selection_on_a_label_subset(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    from training.validation import validate

    labels3 = ["sad", "angry", "happy"]  # a head with a label the subset (and the data) lack
    train_u = [u for u in tiny_corpus if u.speaker != "spk_c"]
    val_u = [u for u in tiny_corpus if u.speaker == "spk_c"]
    train_ds = AudioDataset(train_u, labels3, crop_s=0.5, trim_db=None)
    val_ds = AudioDataset(val_u, labels3, trim_db=None)
    model = build_model("realtime", TINY, labels3)
    result = train(model, train_ds, val_ds, _cfg(tmp_path / "s", epochs=2, select_labels=LABELS))
    assert all("val_sub_ua" in h for h in result.history)
    m = validate(model, val_ds, LABELS)
    assert m["sub_n"] == len(val_u) and 0.0 <= m["sub_ua"] <= 1.0
    assert json.loads((tmp_path / "s" / "best.json").read_text())["best_metric"] == max(
        h["val_sub_ua"] for h in result.history
    )


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "training" / "configs").glob("*.toml")))
def test_shipped_training_configs_parse(name: str, tmp_path: Path) -> None:
    import argparse

    from training.cli import _train_options, add_train_parser
    from training.models import build_model as build

    sub = argparse.ArgumentParser().add_subparsers()
    args = add_train_parser(sub).parse_args(
        [str(REPO / "training" / "configs" / name), "--out", str(tmp_path)]
    )
    model_name, model_cfg, data, cfg, engine = _train_options(args)
    assert model_name == "realtime" and data.split in ("default", "devall") and cfg.threads == 1
    assert data.split == "default" or cfg.average_last > 0  # devall has no validation to choose on
    assert engine["window_s"] == 2.0 and cfg.out_dir == tmp_path
    build(model_name, model_cfg, ["neutral", "happy", "sad", "angry"])  # every model key is known


def test_cli_missing_backbone_is_a_one_line_error(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,speaker,label\n" + "".join(f"{u.path},{u.speaker},{u.label}\n" for u in tiny_corpus)
    )
    r = _cli("train", "--corpus", f"csv={manifest}", "--split", "speakers=spk_c", "--labels", "sad,angry",
             "--backbone", str(tmp_path / "no-such-backbone"), "--out", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "backbone path not found" in lines[0] and "no-such-backbone" in lines[0]


def test_emotrack_train_json_summarises_the_run(tiny_corpus: list[Utterance], tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,speaker,label\n" + "".join(f"{u.path},{u.speaker},{u.label}\n" for u in tiny_corpus)
    )
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model_config]\n" + "".join(f"{k} = {v}\n" for k, v in TINY.items())
        + "[train]\nbatch_size = 8\nwarmup_steps = 2\n"
    )  # fmt: skip
    r = _emotrack("train", str(config), "--corpus", f"csv={manifest}", "--split", "speakers=spk_c",
                  "--labels", "sad,angry", "--epochs", "1", "--samples-per-epoch", "16", "--threads", "1",
                  "--no-augment", "--no-progress", "--out", str(tmp_path / "run"), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is exactly one JSON object
    assert doc["run_dir"] == str(tmp_path / "run") and doc["best_epoch"] == 1
    assert doc["val"]["n"] > 0 and 0 <= doc["val"]["ua"] <= 1
    assert doc["test"]["n"] == 12  # spk_c: 6 sad + 6 angry, held out
    assert doc["engine_dir"] == str(tmp_path / "run" / "engine") and doc["parity"]["passed"] is True
    assert (tmp_path / "run" / "engine" / "engine.json").is_file()


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

    class Crash(Exception):
        pass

    def crash_after_second(record: dict[str, object]) -> None:
        if record["epoch"] == 1:
            raise Crash

    torch.manual_seed(0)
    with pytest.raises(Crash):
        train(
            build_model("realtime", TINY, LABELS),
            train_ds,
            val_ds,
            _cfg(tmp_path / "b", average_last=2),
            on_epoch=crash_after_second,
        )
    resumed = build_model("realtime", TINY, LABELS)
    train(resumed, train_ds, val_ds, _cfg(tmp_path / "b", average_last=2, resume=True))
    again = load_checkpoint_model(tmp_path / "b" / "best")
    for (name, a), b in zip(averaged.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


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
