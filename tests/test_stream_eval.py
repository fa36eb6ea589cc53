"""Speakers replayed as streams through the daemon's centring: mixes, causality, figures, report rows."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.centring import CentringConfig
from streamer.records import EmotionValues, EngineRef, UtteranceRecord
from training.baseline import speaker_normalised
from training.data.types import Utterance
from training.stream_daemon import clip_predictions, write_streams
from training.stream_eval import Clips, clips_from_predictions, mix_rows, replay, stream_figures

LABELS = ["neutral", "happy", "sad", "angry"]
KINDS = ["neutral"] * 4 + ["calm"] * 8 + ["happy"] * 8 + ["sad"] * 8 + ["angry"] * 8 + ["fear"] * 8


def biased_clips(n_speakers: int = 4, seed: int = 0) -> Clips:
    """RAVDESS-shaped speakers whose voices each push every score towards one class."""
    rng = np.random.default_rng(seed)
    probs, truth, kinds, speakers = [], [], [], []
    for s in range(n_speakers):
        bias = np.zeros(4)
        bias[s % 4] = 2.0
        for kind in KINDS:
            logits = rng.normal(0.0, 0.4, 4) + bias
            target = {"calm": 0, "fear": 3}.get(kind, LABELS.index(kind) if kind in LABELS else 0)
            logits[target] += 1.5
            probs.append(np.exp(logits) / np.exp(logits).sum())
            truth.append(LABELS.index(kind) if kind in LABELS else -1)
            kinds.append(kind)
            speakers.append(f"spk{s}")
    return Clips(np.array(probs), np.array(truth), kinds, speakers, np.full(len(truth), 3.0))


def test_mixes_hold_the_speakers_clips_in_a_seeded_order() -> None:
    clips = biased_clips()
    rows = mix_rows(clips.kinds, clips.speakers, "spk1", "as-recorded", np.random.default_rng(3))
    assert sorted(rows.tolist()) == list(range(len(KINDS), 2 * len(KINDS)))
    again = mix_rows(clips.kinds, clips.speakers, "spk1", "as-recorded", np.random.default_rng(3))
    assert rows.tolist() == again.tolist() != sorted(rows.tolist())
    mostly = mix_rows(clips.kinds, clips.speakers, "spk1", "mostly-neutral", np.random.default_rng(3))
    kinds = [clips.kinds[int(i)] for i in mostly]
    assert len(kinds) == 18 and kinds.count("neutral") + kinds.count("calm") == 12
    assert all(kinds.count(k) == 2 for k in ("happy", "sad", "angry")) and "fear" not in kinds
    assert all(clips.speakers[int(i)] == "spk1" for i in mostly)
    with pytest.raises(ValueError, match="unknown stream mix"):
        mix_rows(clips.kinds, clips.speakers, "spk1", "shuffled", np.random.default_rng(0))  # type: ignore[arg-type]


def test_replay_is_causal() -> None:
    clips = biased_clips(1)
    rows = np.arange(len(KINDS))
    cfg = CentringConfig(strength=1.0, warmup_s=0.0, gate=1.0)
    full = replay(clips, rows, cfg)
    half = replay(clips, rows[:20], cfg)
    np.testing.assert_allclose(full[:20], half)  # later clips never change earlier outputs
    np.testing.assert_allclose(full[0], clips.probabilities[0])  # the first clip is left as it is


def test_centring_recovers_what_the_voice_hid() -> None:
    clips = biased_clips()
    rec = stream_figures(clips, CentringConfig(strength=1.0, gate=1.0), "as-recorded", [0, 1])
    assert rec.n_scored == 4 * 28 and rec.seeds == (0, 1)
    assert rec.raw[0] == rec.raw[1]  # per clip: the order does not matter
    assert rec.raw_mean < 0.6 < 0.8 < rec.centred_mean
    off = stream_figures(clips, CentringConfig(strength=0.0, gate=1.0), "as-recorded", [0])
    assert off.centred == off.raw
    d = rec.to_dict()
    assert d["mix"] == "as-recorded" and d["ua_centred_mean"] == round(rec.centred_mean, 4)
    mostly = stream_figures(clips, CentringConfig(strength=1.0, gate=1.0), "mostly-neutral", [0])
    assert mostly.n_scored == 4 * (4 + 6)


def test_clips_from_report_predictions() -> None:
    preds = [
        {"speaker": "a", "label": "sad", "probabilities": [0.1, 0.1, 0.7, 0.1], "seconds": 2.5},
        {"speaker": "a", "label": "calm", "probabilities": [0.6, 0.2, 0.1, 0.1], "seconds": 3.0},
        {
            "speaker": "b",
            "label": "angry",
            "probabilities": None,
            "seconds": 2.0,
        },  # no class scores: left out
    ]
    clips = clips_from_predictions(preds, LABELS)
    assert clips.truth.tolist() == [2, -1] and list(clips.kinds) == ["sad", "calm"]
    assert clips.seconds.tolist() == [2.5, 3.0] and clips.probabilities.shape == (2, 4)
    with pytest.raises(ValueError, match="no per-utterance class probabilities"):
        clips_from_predictions(preds[2:], LABELS)
    with pytest.raises(ValueError, match="one entry per clip"):
        Clips(np.ones((2, 4)), np.array([0, 1]), ["sad"], ["a", "a"], np.ones(2))


def test_speaker_normalised_features_hand_computed() -> None:
    feats = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 5.0], [5.0, 7.0]])
    out = speaker_normalised(feats, ["x", "x", "y", "y"])
    np.testing.assert_allclose(out[:2], [[-1.0, -1.0], [1.0, 1.0]], atol=1e-5)
    np.testing.assert_allclose(out[2:, 1], [-1.0, 1.0], atol=1e-5)
    assert np.all(np.abs(out[2:, 0]) < 1e-3)  # a constant feature stays finite, at zero


def _utterance_record(stream: str, start: float, end: float, probs: list[float]) -> UtteranceRecord:
    values = EmotionValues(None, dict(zip(LABELS, probs, strict=True)), None, None, None)
    return UtteranceRecord(stream, 0, 0, start, end, 0.0, 1, 0, values, EngineRef("e", "1"))


def test_daemon_utterances_map_back_to_clips() -> None:
    spans = {"a": [(0.0, 3.0, 2), (3.5, 6.0, 1), (6.5, 8.0, -1), (8.5, 9.0, 0)]}
    utterances = {
        "a": [
            _utterance_record("a", 0.2, 2.9, [0.1, 0.1, 0.7, 0.1]),  # the first clip: sad
            _utterance_record("a", 3.6, 4.0, [0.1, 0.1, 0.1, 0.7]),  # 0.4 s angry ...
            _utterance_record("a", 4.0, 5.9, [0.1, 0.7, 0.1, 0.1]),  # ... 1.9 s happy: happy wins
            _utterance_record("a", 6.6, 7.9, [0.7, 0.1, 0.1, 0.1]),  # unlabelled clip: not scored
        ]
    }
    truth, pred = clip_predictions(spans, utterances)
    assert truth == [2, 1, 0] and pred == [2, 1, -1]  # the VAD heard nothing in the last clip: wrong


def test_streams_are_written_in_the_mix_order(tmp_path: Path) -> None:
    utts = []
    for i, kind in enumerate(["neutral", "calm", "happy", "sad", "angry", "fear"]):
        path = tmp_path / f"{i}.flac"
        sf.write(path, np.full(1600 * (i + 1), 0.1, dtype=np.float32), 16000)
        utts.append(Utterance(path, "ravdess", "ravdess_19", kind, kind))
    spans = write_streams(utts, "as-recorded", 0, tmp_path / "out")
    order = mix_rows(
        [u.label for u in utts],
        [u.speaker for u in utts],
        "ravdess_19",
        "as-recorded",
        np.random.default_rng(0),
    )
    clips = spans["ravdess_19"]
    assert [round(end - start, 3) for start, end, _ in clips] == [round(0.1 * (int(r) + 1), 3) for r in order]
    assert all(b[0] - a[1] == pytest.approx(0.5) for a, b in itertools.pairwise(clips))  # the gaps
    audio, sr = sf.read(tmp_path / "out" / "ravdess_19.wav")
    assert sr == 16000 and len(audio) / sr == pytest.approx(clips[-1][1] + 0.5)
    assert [y for *_, y in clips] == [[0, -1, 1, 2, 3, -1][int(r)] for r in order]
