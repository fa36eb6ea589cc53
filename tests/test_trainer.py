"""Trainer, checkpoints and the training CLI on a tiny synthetic two-emotion corpus written to disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures_training import LABELS, TINY, Crash, crash_after
from tests.fixtures_training import tiny_datasets as _datasets
from tests.fixtures_training import tiny_train_config as _cfg
from training.checkpoints import CheckpointError, load_checkpoint_model, resolve_checkpoint
from training.data.dataset import AudioDataset, collate
from training.data.types import Utterance
from training.models import build_model
from training.trainer import repeat_pad, train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


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

    torch.manual_seed(0)
    first = build_model("realtime", TINY, LABELS)
    with pytest.raises(Crash):
        train(first, train_ds, val_ds, _cfg(tmp_path / "b"), on_epoch=crash_after(0))
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


CONFIGS = REPO / "training" / "configs"


@pytest.mark.parametrize("name", sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.toml")))
def test_shipped_training_configs_parse(name: str, tmp_path: Path) -> None:
    import argparse

    from training.cli import _train_options, add_train_parser
    from training.data.augment import augmenter_from_options
    from training.models import build_model as build

    sub = argparse.ArgumentParser().add_subparsers()
    args = add_train_parser(sub).parse_args([str(CONFIGS / name), "--out", str(tmp_path)])
    model_name, model_cfg, data, cfg, engine = _train_options(args)
    assert model_name == "realtime" and data.split in ("default", "devall") and cfg.threads == 1
    assert data.split == "default" or cfg.average_last > 0  # devall has no validation to choose on
    assert engine["window_s"] == 2.0 and cfg.out_dir == tmp_path
    build(model_name, model_cfg, ["neutral", "happy", "sad", "angry"])  # every model key is known
    augmenter_from_options(data.augment_options, babble_pool=[])  # every augmentation setting is known


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
