"""Evaluation of engines and checkpoints on generated corpora, reports on disk, the CLI pieces and the
eGeMAPS baseline."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engines import load_engine
from training.commands import add_baseline_parser, add_evaluate_parser, run_baseline, run_evaluate
from training.data.corpora import load_corpus
from training.data.labels import LABEL_SETS
from training.data.types import Utterance
from training.evaluate import (
    EvalError,
    evaluate_checkpoint,
    evaluate_default_engine,
    evaluate_engine,
    evaluate_scores,
    label_matrix,
    write_report,
)
from training.scoring import WindowPlan, score_utterances, segments

torch.set_num_threads(1)
SR = 16000
FREQ = {"01": 140.0, "02": 170.0, "03": 260.0, "04": 110.0, "05": 330.0}


def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """Harmonic 'voice' with vibrato and a syllable envelope, between half-second silences."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(h * ph) / h for h in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)
    x = 0.2 * x + 0.003 * rng.standard_normal(len(t))
    sil = np.zeros(SR // 2)
    return np.concatenate([sil, x, sil]).astype(np.float32)


def make_ravdess(
    root: Path, actors: range, emotions: tuple[str, ...] = ("01", "02", "03", "04", "05")
) -> Path:
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for k, e in enumerate(emotions):
            inten = "01" if e == "01" else "02"
            seconds = 0.8 + 0.1 * ((a + k) % 5)
            sf.write(
                d / f"03-01-{e}-{inten}-01-01-{a:02d}.flac",
                voice(seconds, FREQ[e] * (1 + 0.02 * (a % 3)), a * 10 + k),
                SR,
            )
    return root


@pytest.fixture(scope="module")
def test_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_ravdess(tmp_path_factory.mktemp("ravdess"), range(16, 25))
    sf.write(root / "Actor_19" / "03-01-05-02-02-02-19.flac", voice(10.0, 330.0, 99), SR)  # long: windowed
    return root


def test_segments_window_long_utterances() -> None:
    plan = WindowPlan.from_seconds(2.0, 0.5, 0.5, 8.0)
    assert len(segments(np.ones(SR * 3, np.float32), plan)) == 1  # whole up to max_window_s
    assert len(segments(np.ones(SR // 4, np.float32), plan)[0]) == SR // 2  # padded to min_window_s
    wins = segments(np.arange(SR * 10, dtype=np.float32), plan)
    assert len(wins) == 17 and all(len(w) == 2 * SR for w in wins)
    assert wins[-1][-1] == SR * 10 - 1  # last window reaches the end
    odd = segments(np.zeros(int(SR * 9.3), np.float32), plan)
    assert len(odd) == 16  # 15 on the hop grid + one aligned to the end


def test_batched_scores_equal_single_scores(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    m = engine.manifest
    plan = WindowPlan.from_seconds(m.window_s, m.hop_s, m.min_window_s, m.max_window_s, m.padding)
    audio = [voice(s, 200.0, i)[SR // 2 : -SR // 2] for i, s in enumerate((1.0, 1.0, 0.2, 9.0))]

    def score(b: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        r = engine.infer(b)
        return r.probabilities, r.vad

    got = score_utterances(audio, score, plan, bucket_s=0.0)
    assert got.windows == [1, 1, 1, 15]
    assert got.probabilities is not None and got.vad is not None
    for i in range(3):
        single = engine.infer(engine.pad_to_min(audio[i])[None])
        assert np.allclose(got.probabilities[i], single.probabilities[0], atol=1e-5)  # type: ignore[index]
    wins = np.stack(segments(audio[3], plan))
    assert np.allclose(got.probabilities[3], engine.infer(wins).probabilities.mean(axis=0), atol=1e-5)  # type: ignore[union-attr]


def test_label_mapping_and_hand_made_scores(tmp_path: Path) -> None:
    m, missing = label_matrix(["fearful", "Neutral", "happy", "calm"], ["neutral", "happy", "sad"])
    assert m.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]] and missing == ["sad"]
    utts = [
        Utterance(tmp_path / f"{i}.wav", "x", f"s{i % 2}", lab, lab, (0.1 * i, 0.0, -0.1 * i))
        for i, lab in enumerate(["neutral", "neutral", "happy", "sad", "calm"])
    ]
    # engine labels neutral, happy: rows predict neutral, happy, happy, neutral, neutral
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.5, 0.4]], dtype=np.float32)
    vad = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0], [0.4, 0, 0]], dtype=np.float32)
    rep = evaluate_scores(utts, probs, vad, ["neutral", "happy"], LABEL_SETS["4"], "hand")
    assert rep.n == 4  # calm is outside the four-class set
    assert rep.recall == {"neutral": 0.5, "happy": 1.0, "sad": 0.0, "angry": None}
    assert rep.ua == pytest.approx(0.5) and rep.wa == pytest.approx(0.5)
    assert rep.unpredictable_labels == ["sad", "angry"]
    assert rep.ccc is not None and rep.ccc["valence"] == pytest.approx(1.0)
    assert rep.predictions[1]["predicted"] == "happy"
    with pytest.raises(EvalError, match="none of the engine labels"):
        evaluate_scores(utts, probs, None, ["fear", "disgust"], LABEL_SETS["4"], "hand")


def test_evaluate_engine_writes_report(tiny_engine_dir: Path, test_corpus: Path, tmp_path: Path) -> None:
    utts = [u for u in load_corpus("ravdess", test_corpus) if u.speaker >= "ravdess_19"]
    rep = evaluate_engine(tiny_engine_dir, utts, "4", threads=1)
    assert rep.n == 6 * 4 + 1 and sum(map(sum, rep.confusion)) == rep.n
    assert rep.ua is not None and 0.0 <= rep.ua <= 1.0 and rep.unpredictable_labels == []
    assert (
        rep.ccc is not None and set(rep.ccc) == {"valence", "arousal", "dominance"} and rep.n_vad == len(utts)
    )
    assert rep.speakers == [f"ravdess_{a}" for a in range(19, 25)]
    everything = evaluate_engine(tiny_engine_dir, utts, "all", threads=1)
    assert everything.n == len(utts) and "calm" in everything.unpredictable_labels
    metrics = write_report(rep, tmp_path / "out")
    data = json.loads(metrics.read_text())
    assert data["ua"] == rep.ua and data["label_set"] == ["neutral", "happy", "sad", "angry"]
    assert "predictions" not in data
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == len(utts)
    import matplotlib.image as mpimg

    png = mpimg.imread(tmp_path / "out" / "confusion.png")
    assert png.ndim == 3 and png.shape[0] > 100 and float(png[..., :3].std()) > 0.05  # not blank


def test_default_engine_figures(tiny_engine_dir: Path, test_corpus: Path) -> None:
    figures, reports = evaluate_default_engine(tiny_engine_dir, test_corpus, threads=1)
    assert figures["test_speakers"] == [f"ravdess_{a}" for a in range(19, 25)]
    assert reports["4"].n == figures["n_4"] == 6 * 4 + 1  # calm excluded from the four-class figure
    assert reports["all"].n == figures["n_all"] == 6 * 5 + 1
    assert figures["unpredictable_all"] == ["fear", "disgust", "surprise", "calm"]
    assert figures["ua_4"] == reports["4"].ua and figures["ua_all"] == reports["all"].ua
    merged, merged_reports = evaluate_default_engine(
        tiny_engine_dir, test_corpus, calm_as_neutral=True, threads=1
    )
    assert merged["calm_as_neutral"] is True and merged_reports["4"].n == 6 * 5 + 1


def test_evaluate_checkpoint(test_corpus: Path, tmp_path: Path) -> None:
    from training.checkpoints import save_checkpoint
    from training.models import build_model

    model = build_model("realtime", {"channels": 32, "blocks": 1}, LABEL_SETS["4"])
    save_checkpoint(tmp_path / "run" / "best", model, {"epoch": 0, "model_name": "realtime"})
    utts = [u for u in load_corpus("ravdess", test_corpus) if u.speaker == "ravdess_20"]
    rep = evaluate_checkpoint(tmp_path / "run", utts, "4")
    assert rep.n == 4 and rep.source.endswith("best") and rep.ccc is not None


def test_evaluate_shows_progress_on_a_terminal(
    tiny_engine_dir: Path, test_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pty
    import sys

    master, slave = pty.openpty()
    base = ["evaluate", "--engine", str(tiny_engine_dir), "--corpus", f"ravdess={test_corpus}"]
    base += ["--split", "speakers=19", "--threads", "1", "--json"]
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert run_evaluate(_cli(add_evaluate_parser, [*base, "--out", str(tmp_path / "a")])) == 0
        tty.flush()
        shown = os.read(master, 65536).decode(errors="replace")
        assert (
            run_evaluate(_cli(add_evaluate_parser, [*base, "--out", str(tmp_path / "b"), "--no-progress"]))
            == 0
        )
        tty.write("END")
        tty.flush()
        quiet = os.read(master, 65536).decode(errors="replace")
    os.close(master)
    assert "decode" in shown and "score" in shown and "100%" in shown, shown
    assert quiet.strip() == "END", quiet


def _cli(add: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser.add_subparsers())  # type: ignore[operator]
    return parser.parse_args(argv)


def test_cli_evaluate(
    tiny_engine_dir: Path, test_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ev"
    base = [
        "evaluate",
        "--engine",
        str(tiny_engine_dir),
        "--corpus",
        f"ravdess={test_corpus}",
        "--out",
        str(out),
    ]
    assert (
        run_evaluate(
            _cli(add_evaluate_parser, [*base, "--split", "speakers=19,20", "--json", "--threads", "1"])
        )
        == 0
    )
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert printed["speakers"] == ["ravdess_19", "ravdess_20"] and (out / "confusion.png").is_file()
    assert captured.err == ""  # stderr is not a terminal here: no progress bar
    assert (
        run_evaluate(_cli(add_evaluate_parser, [*base, "--split", "speakers=21", "--calm-as-neutral"])) == 0
    )
    assert "UA " in capsys.readouterr().out
    streams = [*base, "--split", "speakers=19,20,21", "--streams", "--stream-seeds", "2"]
    assert run_evaluate(_cli(add_evaluate_parser, [*streams, "--centring", "strength=0.5", "--json"])) == 0
    mixes = json.loads(capsys.readouterr().out)["streams"]
    assert [m["mix"] for m in mixes] == ["as-recorded", "mostly-neutral"]
    assert all(m["centring"]["strength"] == 0.5 and m["seeds"] == [0, 1] for m in mixes)
    assert mixes[0]["n_scored"] == json.loads((out / "metrics.json").read_text())["n"]
    assert run_evaluate(_cli(add_evaluate_parser, streams)) == 0
    assert "streams, as-recorded: UA per clip" in capsys.readouterr().out
    cases = [
        ([*streams, "--centring", "strength=2"], 2, "centring.strength"),
        ([*streams, "--centring", "bogus=1"], 2, "centring.bogus"),
        ([*streams, "--centring", "strength"], 2, "KEY=VALUE"),
        ([*streams, "--stream-seeds", "0"], 2, "--stream-seeds"),
        ([*base, "--centring", "strength=0.5"], 2, "add --streams"),
        ([*base, "--labels", "five"], 2, "--labels"),
        ([*base, "--split", "speakers=ravdess_77"], 1, "unknown speaker"),
        (
            [
                "evaluate",
                "--engine",
                str(tmp_path / "none"),
                "--corpus",
                f"ravdess={test_corpus}",
                "--out",
                str(out),
            ],
            1,
            "engine directory not found",
        ),
        (
            [
                "evaluate",
                "--engine",
                str(tiny_engine_dir),
                "--corpus",
                f"ravdess={tmp_path}/x",
                "--out",
                str(out),
            ],
            1,
            "directory not found",
        ),
        (
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path),
                "--corpus",
                f"ravdess={test_corpus}",
                "--out",
                str(out),
            ],
            1,
            "no checkpoint",
        ),
    ]
    for argv, code, words in cases:
        assert run_evaluate(_cli(add_evaluate_parser, argv)) == code
        err = capsys.readouterr().err
        assert err.startswith("emotrack: error:") and words in err and err.count("\n") == 1


def test_baseline_on_generated_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    root = make_ravdess(tmp_path / "ravdess", range(1, 25), ("01", "03", "04", "05"))
    argv = [
        "baseline",
        "--corpus",
        f"ravdess={root}",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "b"),
    ]
    assert run_baseline(_cli(add_baseline_parser, [*argv, "--json"])) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["figures"]["ua_4"] > 0.9  # the four emotions differ in pitch: linearly separable
    assert (tmp_path / "b" / "4" / "metrics.json").is_file() and (
        tmp_path / "b" / "all" / "confusion.png"
    ).is_file()
    (cache,) = (tmp_path / "cache").iterdir()
    stamp = os.stat(cache).st_mtime_ns
    assert run_baseline(_cli(add_baseline_parser, [*argv, "--json"])) == 0
    assert json.loads(capsys.readouterr().out) == first  # same figures from cached features
    assert os.stat(cache).st_mtime_ns == stamp  # nothing recomputed
    assert run_baseline(_cli(add_baseline_parser, [*argv, "--speaker-norm"])) == 0
    assert "per-speaker norm" in capsys.readouterr().out
    normed = json.loads((tmp_path / "b" / "4" / "metrics.json").read_text())
    assert "per-speaker norm" in normed["source"] and normed["ua"] > 0.9
    assert (
        run_baseline(
            _cli(
                add_baseline_parser,
                ["baseline", "--corpus", f"tess={root}", "--cache", str(tmp_path), "--out", str(tmp_path)],
            )
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("emotrack: error:")
