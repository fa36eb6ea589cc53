"""Per-stream score centring: hand-computed references, resets, and the tracker using it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streamer.centring import CentringConfig, StreamCentring
from streamer.messages import Scores, SpeechWindow, UtteranceEnded
from streamer.records import EngineRef
from streamer.smoothing import SmoothingConfig
from streamer.tracker import StreamTracker

LABELS = ("neutral", "happy", "sad", "angry")
FULL = CentringConfig(strength=1.0, warmup_s=0.0, gate=1.0)


def log_softmax(x: list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a - (a.max() + np.log(np.exp(a - a.max()).sum()))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("strength", 1.5),
        ("strength", -0.1),
        ("warmup_s", -1.0),
        ("horizon_s", 0.5),
        ("reset_after_s", -2.0),
        ("strength", math.nan),
        ("warmup_s", math.inf),
        ("estimator", "median"),
        ("gate", 0.0),
        ("gate", 1.2),
    ],
)
def test_bad_settings_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"centring.{key}|finite"):
        CentringConfig(**{key: value})  # type: ignore[arg-type]


def test_defaults_are_the_setting_picked_on_unseen_speakers_streams() -> None:
    cfg = CentringConfig()  # docs/track.md: the rule's pick on the dev streams
    assert (cfg.enabled, cfg.strength, cfg.warmup_s, cfg.estimator, cfg.gate) == (
        True,
        1.0,
        30.0,
        "mean",
        0.6,
    )


def test_each_window_is_centred_on_the_earlier_ones_only() -> None:
    c = StreamCentring(4, FULL)
    first, second = log_softmax([1, 0, 0, 0]), log_softmax([0, 2, 0, 0])
    np.testing.assert_allclose(c.adapt(first, 1.0), first)  # nothing heard yet: unchanged
    np.testing.assert_allclose(c.adapt(second, 3.0), second - first)
    # the reference is weighted by audio: 1 s of the first, 3 s of the second
    np.testing.assert_allclose(c.offset(), (1 * first + 3 * second) / 4)
    assert c.speech_seconds == 4.0


def test_strength_and_warm_up_scale_the_offset() -> None:
    c = StreamCentring(4, CentringConfig(strength=0.5, warmup_s=10.0, gate=1.0))
    x = log_softmax([0, 0, 3, 0])
    c.adapt(x, 4.0)
    np.testing.assert_allclose(c.offset(), 0.5 * 0.4 * x)  # 4 of 10 warm-up seconds
    c.adapt(x, 20.0)
    np.testing.assert_allclose(c.offset(), 0.5 * x)  # warm


def test_beyond_the_horizon_the_mean_is_exponential() -> None:
    c = StreamCentring(2, CentringConfig(strength=1.0, warmup_s=0.0, horizon_s=10.0, gate=1.0))
    a, b = np.array([-0.1, -2.0]), np.array([-2.0, -0.1])
    c.adapt(a, 30.0)  # 30 s, counted as the horizon's 10
    c.adapt(b, 10.0)
    np.testing.assert_allclose(c.offset(), a + 10 / 20 * (b - a))
    assert c.speech_seconds == 10.0


def test_a_long_silence_forgets_the_speaker() -> None:
    c = StreamCentring(4, CentringConfig(strength=1.0, warmup_s=0.0, reset_after_s=60.0, gate=1.0))
    x = log_softmax([0, 0, 3, 0])
    c.adapt(x, 5.0)
    c.silence(59.0)
    assert c.resets == 0 and np.any(c.offset() != 0)
    c.silence(60.0)
    assert c.resets == 1 and not np.any(c.offset())
    np.testing.assert_allclose(c.adapt(x, 1.0), x)


def test_balanced_estimator_averages_per_class_means() -> None:
    c = StreamCentring(2, CentringConfig(strength=1.0, warmup_s=0.0, estimator="balanced", gate=1.0))
    a, b = np.array([-0.1, -2.4]), np.array([-2.4, -0.1])
    c.adapt(a, 1.0)  # class 0
    c.adapt(a, 1.0)  # centred on a: a tie at 0, argmax class 0
    np.testing.assert_allclose(c.offset(), a)  # only class 0 seen: its mean
    c.adapt(b, 1.0)  # b - a favours class 1
    np.testing.assert_allclose(c.offset(), (a + b) / 2)  # two classes weigh the same, whatever their time


def test_probabilities_in_and_out_and_bad_input() -> None:
    c = StreamCentring(3, FULL)
    p = c.adapt_probabilities([1.0, 0.0, 0.0], 1.0)  # a hard zero stays finite
    assert p.sum() == pytest.approx(1.0) and np.all(np.isfinite(p))
    q = c.adapt_probabilities([0.2, 0.3, 0.5], 1.0)
    assert q.sum() == pytest.approx(1.0) and q[0] < 0.2  # the stream leaned to class 0
    with pytest.raises(ValueError, match="3 finite"):
        c.adapt([0.0, math.nan, 0.0], 1.0)
    with pytest.raises(ValueError, match="3 finite"):
        c.adapt([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="two classes"):
        StreamCentring(1, FULL)


def test_a_speakers_offset_is_removed() -> None:
    """A voice the engine reads as sad: true emotions cycle, every score carries the same sad bias."""
    rng = np.random.default_rng(0)
    c = StreamCentring(4, CentringConfig(strength=1.0, gate=1.0))
    bias = np.array([0.0, 0.0, 2.0, 0.0])
    raw_hits = centred_hits = 0
    for step in range(400):
        truth = step % 4
        logits = rng.normal(0.0, 0.5, 4) + bias
        logits[truth] += 1.5
        x = log_softmax(list(logits))
        centred = c.adapt(x, 2.0)
        if step >= 100:  # after the warm-up
            raw_hits += int(np.argmax(x) == truth)
            centred_hits += int(np.argmax(centred) == truth)
    assert raw_hits < 0.5 * 300 < 0.9 * 300 < centred_hits


def _window(utterance: int, index: int, start: float, end: float) -> SpeechWindow:
    return SpeechWindow("s1", utterance, index, round(start * 16000), round(end * 16000), np.zeros(0), 0.0)


def _scores(p: list[float]) -> Scores:
    return Scores(dict(zip(LABELS, p, strict=True)), (0.1, 0.2, 0.3))


def test_tracker_centres_smoothed_and_summaries_but_keeps_raw() -> None:
    tr = StreamTracker("s1", EngineRef("e", "1"), LABELS, True, SmoothingConfig(alpha=1.0), centring=FULL)
    first = tr.on_window(_window(0, 0, 0.0, 2.0), _scores([0.1, 0.1, 0.7, 0.1]))
    assert first is not None and first.smoothed.scores == pytest.approx(first.raw.scores)
    second = tr.on_window(_window(0, 1, 0.5, 2.5), _scores([0.1, 0.1, 0.7, 0.1]))
    assert second is not None and second.raw.scores == {
        "neutral": 0.1,
        "happy": 0.1,
        "sad": 0.7,
        "angry": 0.1,
    }
    assert second.smoothed.scores == pytest.approx(
        dict.fromkeys(LABELS, 0.25)
    )  # the same as the stream's mean
    assert tr.centring is not None and tr.centring.speech_seconds == pytest.approx(
        2.5
    )  # overlap counted once
    assert second.raw.valence == second.smoothed.valence == 0.1  # V/A/D pass through
    summary = tr.on_utterance_end(UtteranceEnded("s1", 0, 0, 40000, 0.0, 2)).summary
    assert summary.scores is not None and first.smoothed.scores is not None
    expected = {k: (first.smoothed.scores[k] + 0.25) / 2 for k in LABELS}  # the mean of the centred windows
    assert summary.scores == pytest.approx(expected)


def test_tracker_resets_after_a_long_pause_and_can_be_off() -> None:
    cfg = CentringConfig(strength=1.0, warmup_s=0.0, reset_after_s=30.0, gate=1.0)
    tr = StreamTracker("s1", EngineRef("e", "1"), LABELS, False, SmoothingConfig(alpha=1.0), centring=cfg)
    tr.on_window(_window(0, 0, 0.0, 2.0), _scores([0.1, 0.1, 0.7, 0.1]))
    tr.on_window(_window(1, 0, 20.0, 22.0), _scores([0.1, 0.1, 0.7, 0.1]))  # 18 s pause: same speaker
    assert tr.centring is not None and tr.centring.resets == 0
    rec = tr.on_window(_window(2, 0, 60.0, 62.0), _scores([0.1, 0.1, 0.7, 0.1]))  # 38 s: a new reference
    assert tr.centring.resets == 1 and rec is not None
    assert rec.smoothed.scores == pytest.approx(rec.raw.scores)
    off = StreamTracker(
        "s1", EngineRef("e", "1"), LABELS, False, SmoothingConfig(), centring=CentringConfig(enabled=False)
    )
    assert off.centring is None
    assert (
        StreamTracker("s1", EngineRef("e", "1"), None, True, SmoothingConfig(), centring=FULL).centring
        is None
    )


def test_tracker_with_centring_reports_a_label_mismatch_clearly() -> None:
    tr = StreamTracker("s1", EngineRef("e", "1"), LABELS, False, SmoothingConfig(), centring=FULL)
    with pytest.raises(ValueError, match="smoother expects"):
        tr.on_window(_window(0, 0, 0.0, 2.0), Scores({"calm": 1.0}, None))


def test_gated_update_learns_only_from_unsure_windows() -> None:
    """gate 0.6: a window whose top probability is 0.9 teaches nothing; one at 0.5 is the reference."""
    c = StreamCentring(4, CentringConfig(strength=1.0, warmup_s=0.0, gate=0.6))
    sure = np.log([0.9, 0.05, 0.03, 0.02])
    unsure = np.log([0.5, 0.3, 0.1, 0.1])
    np.testing.assert_allclose(c.adapt(sure, 1.0), sure)  # nothing learned yet
    assert c.speech_seconds == 0.0
    np.testing.assert_allclose(c.adapt(sure, 1.0), sure)  # still nothing: the confident window was skipped
    c.adapt(unsure, 2.0)
    assert c.speech_seconds == 2.0
    np.testing.assert_allclose(c.offset(), unsure)
    np.testing.assert_allclose(c.adapt(sure, 1.0), sure - unsure)
    np.testing.assert_allclose(c.offset(), unsure)  # the confident window again taught nothing
    ungated = StreamCentring(4, CentringConfig(strength=1.0, warmup_s=0.0, gate=1.0))
    ungated.adapt(sure, 1.0)
    np.testing.assert_allclose(ungated.offset(), sure)  # gate 1 (the default): every window teaches


def test_gate_loads_from_file_env_and_set(tmp_path: Path) -> None:
    from streamer.config import load_config

    path = tmp_path / "c.toml"
    path.write_text("[centring]\ngate = 0.7\n")
    assert load_config(path, environ={}).centring.gate == 0.7
    assert load_config(environ={"EMOTRACK_CENTRING__GATE": "0.8"}).centring.gate == 0.8
    assert load_config(environ={}, overrides=[("centring.gate", "0.5")]).centring.gate == 0.5
