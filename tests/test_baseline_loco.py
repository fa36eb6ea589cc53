"""The reference rows of engine 2.0's table on four tiny generated corpora laid out like RAVDESS, TESS, ASED
and nEMO: `emotrack baseline --loco` (eGeMAPS + logistic regression, leave-one-corpus-out) and `emotrack
evaluate --split speakers=1-18`. RAVDESS actors 19-24 hold undecodable files: reading one fails the test."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_evaluate import SR, voice
from training.baseline_loco import corpus_class_weights
from training.commands import add_baseline_parser, add_evaluate_parser, run_baseline, run_evaluate

F0 = {"neutral": 120.0, "happy": 240.0, "sad": 95.0, "angry": 330.0}  # the classes differ in pitch
RAVDESS_CODE = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
ASED_CODE = {"neutral": "n", "happy": "h", "sad": "s", "angry": "a"}
NEMO_NAME = {"neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger"}
NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def clip(path: Path, label: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voice(0.9 + 0.1 * (seed % 3), F0[label] * (1 + 0.02 * (seed % 4)), seed), SR)


def make_corpora(root: Path) -> dict[str, Path]:
    """Two speakers per corpus, two clips per class; RAVDESS test actors 19-24 hold undecodable files."""
    seed = 0
    for a in (1, 2, *range(19, 25)):
        for label, code in RAVDESS_CODE.items():
            for rep in ("01", "02"):
                path = root / "ravdess" / f"Actor_{a:02d}" / f"03-01-{code}-02-01-{rep}-{a:02d}.flac"
                if a >= 19:  # reading one of these fails the run
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"test actors must never be read")
                else:
                    clip(path, label, seed := seed + 1)
    tsv = [NEMO_HEADER]
    for spk in ("OAF", "YAF"):
        for label in F0:
            for word in ("back", "bath"):
                clip(root / "tess" / f"{spk}_{label}" / f"{spk}_{word}_{label}.flac", label, seed := seed + 1)
    for spk in ("07", "30"):
        for label, code in ASED_CODE.items():
            for rep in ("01", "02"):
                clip(root / "ased" / f"{code}1-01-{rep}-01-{spk}.flac", label, seed := seed + 1)
    for spk in ("EB0", "KD0"):
        for label, name in NEMO_NAME.items():
            for n in (1, 2):
                stem = f"{spk}_{name}_{n}"
                clip(root / "nemo" / spk / f"{stem}.flac", label, seed := seed + 1)
                tsv.append(f"{stem}.wav\t{name}\tx\tx\t{spk}\tfemale\t30\n")
    (root / "nemo" / "data.tsv").write_text("".join(tsv), encoding="utf-8")
    return {name: root / name for name in ("ravdess", "tess", "ased", "nemo")}


def _cli(argv: list[str], add: object = add_baseline_parser) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser.add_subparsers())  # type: ignore[operator]
    return parser.parse_args(argv)


def test_weights_equal_per_corpus_and_class() -> None:
    corpora = ["a"] * 6 + ["b"] * 2
    y = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    w = corpus_class_weights(corpora, y)
    assert w.mean() == pytest.approx(1.0)
    mass = {(c, k): w[(np.array(corpora) == c) & (y == k)].sum() for c in "ab" for k in (0, 1)}
    assert all(m == pytest.approx(len(y) / 4) for m in mass.values())  # each (corpus, class) a quarter


def test_loco_on_generated_corpora(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    roots = make_corpora(tmp_path / "corpora")
    out = tmp_path / "loco"
    argv = ["baseline", "--loco", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    for name, path in roots.items():
        argv += ["--corpus", f"{name}={path}"]
    assert run_baseline(_cli(argv)) == 0, capsys.readouterr().err  # would fail reading actors 19-24
    printed = capsys.readouterr().out
    assert "held out" in printed and "mean" in printed
    summary = json.loads((out / "loco.json").read_text())
    assert set(summary["held_out_ua"]) == {"ravdess", "tess", "ased", "nemo"}
    assert summary["clips"] == {"ravdess": 16, "tess": 16, "ased": 16, "nemo": 16}  # 4-class, actors 1-2
    assert summary["mean_ua"] == pytest.approx(np.mean(list(summary["held_out_ua"].values())))
    assert summary["mean_ua"] > 0.9  # pitch separates the classes in every corpus: it transfers
    held = json.loads((out / "ravdess" / "metrics.json").read_text())
    assert held["speakers"] == ["ravdess_01", "ravdess_02"]
    assert all(len(v) == 7 for v in summary["inner_ua_by_c"].values())  # C chosen on the training corpora
    assert run_baseline(_cli([*argv[:6], "--corpus", f"tess={roots['tess']}"])) == 1
    assert "at least three corpora" in capsys.readouterr().err
    assert run_baseline(_cli([*argv, "--speaker-norm"])) == 2


def test_evaluate_an_actor_range_only(
    tiny_engine_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots = make_corpora(tmp_path / "corpora")
    argv = ["evaluate", "--engine", str(tiny_engine_dir), "--corpus", f"ravdess={roots['ravdess']}"]
    argv += ["--split", "speakers=1-2", "--threads", "1", "--json", "--out", str(tmp_path / "ev")]
    assert run_evaluate(_cli(argv, add_evaluate_parser)) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["speakers"] == ["ravdess_01", "ravdess_02"] and report["n"] == 16


def test_evaluate_labelled_only(
    tiny_engine_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "rav" / "Actor_01"
    for code, label in (("01", "neutral"), ("03", "happy"), ("06", "angry")):  # 06 = fear: not in the set
        clip(root / f"03-01-{code}-02-01-01-01.flac", label, int(code))
    argv = ["evaluate", "--engine", str(tiny_engine_dir), "--corpus", f"ravdess={root.parent}", "--split"]
    argv += ["all", "--threads", "1", "--json", "--out", str(tmp_path / "ev")]
    assert run_evaluate(_cli(argv, add_evaluate_parser)) == 0
    everything = json.loads(capsys.readouterr().out)
    assert (everything["n"], everything["n_vad"]) == (2, 3)  # CCC also counts the fear clip
    assert run_evaluate(_cli([*argv, "--labelled-only"], add_evaluate_parser)) == 0
    labelled = json.loads(capsys.readouterr().out)
    assert (labelled["n"], labelled["n_vad"]) == (2, 2)
