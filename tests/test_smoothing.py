"""Smoother: EMA in audio time, label hysteresis, silence hold/decay, engines with either head."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.messages import Scores
from streamer.smoothing import Smoother, SmoothingConfig

LABELS = ("neutral", "happy", "sad", "angry")


def probs(**kw: float) -> dict[str, float]:
    """Probabilities over LABELS; the rest of the mass is spread evenly over unnamed labels."""
    rest = [k for k in LABELS if k not in kw]
    left = 1.0 - sum(kw.values())
    return {k: kw.get(k, left / len(rest) if rest else 0.0) for k in LABELS}


def sc(p: dict[str, float] | None = None, vad: tuple[float, float, float] | None = None) -> Scores:
    return Scores(probabilities=p, vad=vad)


def test_ema_follows_the_time_constant() -> None:
    cfg = SmoothingConfig(tau_s=1.5, hop_s=0.5, margin=0.0)
    sm = Smoother(LABELS, True, cfg)
    first = sm.update(sc(probs(neutral=1.0), (0.0, 0.0, 0.0)), 2.0)
    assert first.probabilities == pytest.approx(probs(neutral=1.0))
    w = 1 - math.exp(-0.5 / 1.5)
    p = np.array([1.0, 0, 0, 0])
    v = np.zeros(3)
    target_p, target_v = np.array([0, 1.0, 0, 0]), np.array([0.8, 0.6, -0.4])
    t = 2.0
    for _ in range(5):
        t += 0.5
        out = sm.update(sc(probs(happy=1.0), (0.8, 0.6, -0.4)), t)
        p = p + w * (target_p - p)
        v = v + w * (target_v - v)
        assert out.probabilities is not None and out.vad is not None
        assert [out.probabilities[k] for k in LABELS] == pytest.approx(p.tolist())
        assert out.vad == pytest.approx(tuple(v))
        assert out.audio_time == t


def test_rate_independent_in_audio_time() -> None:
    """Hop 0.25 s and hop 0.5 s reach the same value after the same audio time."""

    def after(hop: float, seconds: float) -> float:
        sm = Smoother(None, True, SmoothingConfig(tau_s=1.5, hop_s=hop, margin=0.0))
        sm.update(sc(vad=(0.0, 0.0, 0.0)), 0.0)
        t = 0.0
        out = None
        while t < seconds - 1e-9:
            t += hop
            out = sm.update(sc(vad=(1.0, 1.0, 1.0)), t)
        assert out is not None and out.vad is not None
        return out.vad[0]

    assert after(0.25, 3.0) == pytest.approx(after(0.5, 3.0))
    assert after(0.5, 3.0) == pytest.approx(1 - math.exp(-3.0 / 1.5))


def test_fixed_alpha_and_a_long_gap_counts_as_one_hop() -> None:
    sm = Smoother(None, True, SmoothingConfig(alpha=0.25, margin=0.0))
    sm.update(sc(vad=(0.0, 0.0, 0.0)), 1.0)
    out = sm.update(sc(vad=(1.0, 0.0, 0.0)), 1.5)
    assert out.vad == pytest.approx((0.25, 0.0, 0.0))
    sm2 = Smoother(None, True, SmoothingConfig(tau_s=1.5, hop_s=0.5, margin=0.0))
    sm2.update(sc(vad=(0.0, 0.0, 0.0)), 1.0)
    out = sm2.update(sc(vad=(1.0, 0.0, 0.0)), 30.0)  # next utterance, 29 s later
    assert out.vad is not None
    assert out.vad[0] == pytest.approx(1 - math.exp(-0.5 / 1.5))


def test_alternating_noisy_scores_keep_the_label() -> None:
    sm = Smoother(LABELS, False, SmoothingConfig(tau_s=0.5, margin=0.1, min_switch_s=1.0))
    assert sm.update(sc(probs(neutral=0.7)), 0.5).label == "neutral"
    labels = set()
    for i in range(40):
        p = probs(happy=0.8, neutral=0.1) if i % 2 == 0 else probs(neutral=0.8, happy=0.1)
        out = sm.update(sc(p), 1.0 + 0.5 * i)
        labels.add(out.label)
        assert not out.switched
    assert labels == {"neutral"}


def test_sustained_change_switches_after_min_switch_s() -> None:
    cfg = SmoothingConfig(tau_s=1.0, margin=0.1, min_switch_s=1.0)
    sm = Smoother(LABELS, False, cfg)
    t = 0.0
    for _ in range(6):
        t += 0.5
        sm.update(sc(probs(neutral=0.9)), t)
    lead_since = None
    switched_at = None
    while switched_at is None and t < 20:
        t += 0.5
        out = sm.update(sc(probs(angry=0.9)), t)
        assert out.probabilities is not None
        lead = out.probabilities["angry"] - out.probabilities["neutral"]
        if lead_since is None and lead >= cfg.margin:
            lead_since = t
        if out.switched:
            switched_at = t
            assert out.label == "angry"
        else:
            assert out.label == "neutral"
    assert lead_since is not None and switched_at is not None
    assert switched_at - lead_since == pytest.approx(cfg.min_switch_s)


def test_lead_must_be_continuous() -> None:
    """A lead interrupted before min_switch_s restarts the clock."""
    cfg = SmoothingConfig(alpha=1.0, margin=0.1, min_switch_s=1.0)
    sm = Smoother(LABELS, False, cfg)
    sm.update(sc(probs(neutral=0.9)), 0.0)
    seq = ["happy", "happy", "neutral", "happy", "happy", "neutral", "happy", "happy", "happy"]
    out = None
    for i, lab in enumerate(seq):
        out = sm.update(sc(probs(**{lab: 0.9})), 0.5 * (i + 1))
        if i < len(seq) - 1:
            assert out.label == "neutral"
    assert out is not None and out.label == "happy" and out.switched


def test_no_hysteresis_when_disabled() -> None:
    sm = Smoother(LABELS, False, SmoothingConfig(alpha=1.0, margin=0.0, min_switch_s=0.0))
    for i, lab in enumerate(["sad", "happy", "angry", "sad"]):
        assert sm.update(sc(probs(**{lab: 0.7})), 0.5 * i).label == lab


def test_hold_keeps_the_track_through_silence() -> None:
    sm = Smoother(LABELS, True, SmoothingConfig(silence="hold", margin=0.0))
    before = sm.update(sc(probs(sad=0.9), (-0.6, -0.4, -0.2)), 3.0)
    after = sm.silence(60.0)
    assert after.label == "sad"
    assert after.probabilities == before.probabilities
    assert after.vad == before.vad
    assert after.audio_time == 60.0


def test_decay_moves_toward_neutral_and_zero() -> None:
    cfg = SmoothingConfig(silence="decay", silence_tau_s=2.0, min_switch_s=1.0, margin=0.0)
    sm = Smoother(LABELS, True, cfg)
    sm.update(sc(probs(sad=0.9), (-0.6, -0.4, -0.2)), 3.0)
    out = sm.silence(5.0)  # 2 s of silence: one time constant
    k = math.exp(-1.0)
    p0 = np.array([probs(sad=0.9)[x] for x in LABELS])
    expect = np.array([1.0, 0, 0, 0]) + k * (p0 - np.array([1.0, 0, 0, 0]))
    assert out.probabilities is not None and out.vad is not None
    assert [out.probabilities[x] for x in LABELS] == pytest.approx(expect.tolist())
    assert out.vad == pytest.approx((-0.6 * k, -0.4 * k, -0.2 * k))
    # applying the same silence in two steps gives the same result (gap since last update, once)
    sm2 = Smoother(LABELS, True, cfg)
    sm2.update(sc(probs(sad=0.9), (-0.6, -0.4, -0.2)), 3.0)
    sm2.silence(4.0)
    assert sm2.silence(5.0).vad == pytest.approx(out.vad)
    assert sm2.silence(5.0).vad == pytest.approx(out.vad)  # no time passed: no further decay
    # neutral leads sad by the margin from t≈4.46 s on (first seen at the 4.5 s step); the label
    # follows min_switch_s after that, not before
    assert out.label == "sad"
    assert sm.silence(5.4).label == "sad"
    switched = sm.silence(5.5)
    assert switched.label == "neutral" and switched.switched


def test_decay_without_neutral_label_goes_uniform() -> None:
    labels = ("joy", "anger")
    sm = Smoother(labels, False, SmoothingConfig(silence="decay", silence_tau_s=1.0, margin=0.0))
    sm.update(sc({"joy": 1.0, "anger": 0.0}), 1.0)
    out = sm.silence(100.0)
    assert out.probabilities == pytest.approx({"joy": 0.5, "anger": 0.5})


def test_engines_with_one_head_only() -> None:
    logits_only = Smoother(LABELS, False, SmoothingConfig(margin=0.0))
    out = logits_only.update(sc(probs(happy=0.6), (0.1, 0.2, 0.3)), 1.0)
    assert out.vad is None and out.label == "happy"
    assert out.as_values().valence is None
    vad_only = Smoother(None, True, SmoothingConfig(margin=0.0))
    out = vad_only.update(sc(None, (0.1, 0.2, 0.3)), 1.0)
    assert out.label is None and out.probabilities is None
    assert out.as_values().arousal == pytest.approx(0.2)
    with pytest.raises(ValueError, match="neither"):
        Smoother(None, False, SmoothingConfig(margin=0.0))


def test_mismatched_labels_and_bad_config_are_refused() -> None:
    sm = Smoother(LABELS, False, SmoothingConfig(margin=0.0))
    with pytest.raises(ValueError, match="labels"):
        sm.update(sc({"happy": 1.0}), 1.0)
    with pytest.raises(ValueError, match=r"smoothing\.silence"):
        SmoothingConfig(silence="forget", margin=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"smoothing\.alpha"):
        SmoothingConfig(alpha=1.5, margin=0.0)


def test_defaults_follow_each_window() -> None:
    """docs/track.md: no EMA and a 0.2 margin by default, so a clear window's label is published at once."""
    cfg = SmoothingConfig()
    assert (cfg.tau_s, cfg.alpha, cfg.margin, cfg.min_switch_s) == (0.0, None, 0.2, 0.0)
    sm = Smoother(LABELS, False, cfg)
    for t, label in enumerate(["sad", "happy", "sad", "angry"]):
        probs = {k: (0.55 if k == label else 0.15) for k in LABELS}
        assert sm.update(Scores(probabilities=probs, vad=None), 0.5 * (t + 1)).label == label
