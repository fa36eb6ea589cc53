"""`python -m training.engine_select` end to end on a synthetic RAVDESS + TESS: cross-validation runs, pooled
out-of-fold figures, several runs per fold, devall members judged by their CV runs, and the threshold that
refuses to export (and so never touches the test actors) below it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.test_training_data import make_ravdess, make_tess
from training.engine_select import main as engine_select
from training.pipeline import DataOptions, run_training
from training.trainer import TrainConfig

TINY = {"n_mels": 16, "channels": 16, "prosody_channels": 8, "heads": 2, "blocks": 1, "dropout": 0.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two recipes x two folds (devfold:2), plus one devall run; each a couple of weight-averaged epochs."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("select")
    corpora = [f"ravdess={make_ravdess(root / 'ravdess')}", f"tess={make_tess(root / 'tess')}"]
    out: dict[str, Path] = {}
    for name, mixup, split in (
        ("a_f0", 0.0, "devfold:2:0"),
        ("a_f1", 0.0, "devfold:2:1"),
        ("b_f0", 0.4, "devfold:2:0"),
        ("b_f1", 0.4, "devfold:2:1"),
        ("a_all", 0.0, "devall"),
    ):
        cfg = TrainConfig(
            epochs=2, batch_size=8, samples_per_epoch=16, warmup_steps=1, seed=0, out_dir=root / name,
            progress=False, threads=1, average_last=1, mixup=mixup,
        )  # fmt: skip
        data = DataOptions(corpora=list(corpora), labels="4", merge_calm=False, split=split, crop_s=0.3)
        _, _, metrics = run_training("realtime", dict(TINY), data, cfg)
        assert "test" not in metrics  # CV and devall members are never scored on the test actors
        out[name] = root / name
    return out


def test_pooled_out_of_fold_figures_with_two_runs_per_fold(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert engine_select([str(runs["a_f0"]), str(runs["a_f1"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    pooled = json.loads(lines[-1].split(" ", 1)[1])
    assert lines[-1].startswith("ensemble") and pooled["n"] == 18 * 4  # every development actor, once
    assert engine_select([str(runs[r]) for r in ("a_f0", "a_f1", "b_f0", "b_f1")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{runs['a_f0']}+{runs['b_f0']} ")  # one fold's runs scored together
    assert json.loads(lines[-1].split(" ", 1)[1])["n"] == 18 * 4


def test_a_fold_missing_is_a_clear_error(runs: dict[str, Path]) -> None:
    with pytest.raises(SystemExit, match="each fold of one K equally often"):
        engine_select([str(runs["a_f0"]), str(runs["a_f1"]), str(runs["b_f0"])])


def test_devall_members_below_the_threshold_are_not_exported(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "engine"
    args = [str(runs["a_all"]), "--validation-from", str(runs["a_f0"]), str(runs["a_f1"])]
    refusal = re.escape("< --min-val-ua 1.01: not exported, test speakers not evaluated")
    with pytest.raises(SystemExit, match=refusal):
        engine_select([*args, "--export", str(out), "--min-val-ua", "1.01"])
    assert not out.exists()
    with pytest.raises(SystemExit, match="--validation-from needs cross-validation"):
        engine_select([str(runs["a_all"]), "--validation-from", str(runs["a_all"]), "--export", str(out)])
