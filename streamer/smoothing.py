"""Smoothing of one stream's emotion trajectory: EMA in audio time, label hysteresis, silence policy.

The EMA weight of each window comes from the audio time it advances (capped at the window hop), so
the track behaves the same whatever the hop or the scoring rate. The published label changes only
after another label has led it by ``margin`` for ``min_switch_s`` of audio time, so noisy windows
do not make it flicker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from streamer.messages import Scores
from streamer.records import EmotionValues

SilencePolicy = Literal["hold", "decay"]

_MAX_SILENCE_STEPS = 256  # hysteresis steps per silence call (beyond that the decay has converged)


@dataclass(frozen=True, slots=True)
class SmoothingConfig:
    """``alpha`` (fixed weight per window) wins over ``tau_s`` (time constant in audio seconds). The
    defaults (no EMA; a new label must lead by 0.2 to take over) are the pick of the rule in docs/track.md
    for the default engine 2.0: every EMA tried made the track later and less accurate."""

    tau_s: float = 0.0
    alpha: float | None = None
    hop_s: float = 0.5  # the window hop: the most audio time one window may advance the EMA by
    margin: float = 0.2
    min_switch_s: float = 0.0
    silence: SilencePolicy = "hold"
    silence_tau_s: float = 3.0
    neutral_label: str = "neutral"

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"smoothing.alpha must be in (0, 1] (got {self.alpha!r})")
        if self.tau_s < 0.0:
            raise ValueError(f"smoothing.tau_s must be >= 0 (got {self.tau_s!r})")
        if self.hop_s <= 0.0:
            raise ValueError(f"smoothing.hop_s must be > 0 (got {self.hop_s!r})")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"smoothing.margin must be in [0, 1) (got {self.margin!r})")
        if self.min_switch_s < 0.0:
            raise ValueError(f"smoothing.min_switch_s must be >= 0 (got {self.min_switch_s!r})")
        if self.silence not in ("hold", "decay"):
            raise ValueError(f"smoothing.silence must be 'hold' or 'decay' (got {self.silence!r})")
        if self.silence_tau_s <= 0.0:
            raise ValueError(f"smoothing.silence_tau_s must be > 0 (got {self.silence_tau_s!r})")

    def weight(self, dt: float) -> float:
        """EMA weight of a window that advances the track by ``dt`` seconds of audio."""
        if self.alpha is not None:
            return self.alpha
        if self.tau_s == 0.0:
            return 1.0
        return 1.0 - math.exp(-min(max(dt, 0.0), self.hop_s) / self.tau_s)


@dataclass(frozen=True, slots=True)
class SmoothedValues:
    """The smoothed track after an update; ``label`` is the published (hysteresis) label."""

    label: str | None
    probabilities: dict[str, float] | None
    vad: tuple[float, float, float] | None
    audio_time: float
    switched: bool = False  # the published label changed at this update

    def as_values(self) -> EmotionValues:
        v = self.vad
        return EmotionValues(
            label=self.label,
            scores=None if self.probabilities is None else dict(self.probabilities),
            valence=None if v is None else v[0],
            arousal=None if v is None else v[1],
            dominance=None if v is None else v[2],
        )


class Smoother:
    """EMA of a stream's probabilities and V/A/D with a flicker-free published label."""

    def __init__(self, labels: Sequence[str] | None, has_vad: bool, cfg: SmoothingConfig) -> None:
        if not labels and not has_vad:
            raise ValueError("smoother needs labels, V/A/D or both (the engine has neither output)")
        self.cfg = cfg
        self.labels = tuple(labels) if labels else None
        self.has_vad = has_vad
        self._p: npt.NDArray[np.float64] | None = None
        self._v: npt.NDArray[np.float64] | None = None
        self._neutral = self._neutral_vector()
        self._label: str | None = None
        self._pending: str | None = None  # label leading the published one by the margin
        self._pending_since = 0.0
        self._last_update: float | None = None
        self._decayed_to = 0.0  # audio time the state is valid at (update or silence)

    @property
    def label(self) -> str | None:
        return self._label

    def current(self, audio_time: float | None = None) -> SmoothedValues:
        """The track as it stands (no update)."""
        t = self._decayed_to if audio_time is None else audio_time
        return self._values(t, switched=False)

    def update(self, scores: Scores, audio_time: float) -> SmoothedValues:
        """Fold in one window's scores; ``audio_time`` is the window's end in stream seconds.

        Silence between utterances is not inferred here: call ``silence`` for it first.
        """
        p = self._prob_vector(scores)
        v = None if not self.has_vad or scores.vad is None else np.asarray(scores.vad, dtype=np.float64)
        if self._last_update is None:
            w = 1.0
        else:
            dt = audio_time - self._last_update
            w = self.cfg.weight(dt if dt > 0.0 else self.cfg.hop_s)
        if p is not None:
            self._p = p if self._p is None else self._p + w * (p - self._p)
        if v is not None:
            self._v = v if self._v is None else self._v + w * (v - self._v)
        self._last_update = audio_time
        self._decayed_to = max(self._decayed_to, audio_time)
        return self._values(audio_time, switched=self._hysteresis(audio_time))

    def silence(self, audio_time: float) -> SmoothedValues:
        """No speech from the last update (or silence call) up to ``audio_time``: hold the track,
        or decay probabilities toward neutral and V/A/D toward 0 with ``silence_tau_s``."""
        switched = False
        if self.cfg.silence == "decay" and self._last_update is not None and audio_time > self._decayed_to:
            # step at the hop so the label hysteresis sees the decay as it would have happened
            t = self._decayed_to
            for _ in range(_MAX_SILENCE_STEPS):
                t = min(t + self.cfg.hop_s, audio_time)
                if t >= audio_time:
                    break
                self._decay(t)
                switched = self._hysteresis(t) or switched
            self._decay(audio_time)
            switched = self._hysteresis(audio_time) or switched
        else:
            self._decay(audio_time)
        return self._values(max(audio_time, self._decayed_to), switched=switched)

    def _decay(self, audio_time: float) -> None:
        gap = audio_time - self._decayed_to
        if gap <= 0.0:
            return
        self._decayed_to = audio_time
        if self.cfg.silence != "decay" or self._last_update is None:
            return
        keep = math.exp(-gap / self.cfg.silence_tau_s)
        if self._p is not None and self._neutral is not None:
            self._p = self._neutral + keep * (self._p - self._neutral)
        if self._v is not None:
            self._v = keep * self._v

    def _hysteresis(self, t: float) -> bool:
        """Move the published label; True when it changed."""
        if self._p is None or self.labels is None:
            return False
        best = self.labels[int(np.argmax(self._p))]
        if self._label is None:
            self._label = best
            return True
        lead = self._p[self.labels.index(best)] - self._p[self.labels.index(self._label)]
        if best == self._label or lead < self.cfg.margin:
            self._pending = None
            return False
        if self._pending != best:
            self._pending, self._pending_since = best, t
        if t - self._pending_since >= self.cfg.min_switch_s:
            self._label, self._pending = best, None
            return True
        return False

    def _prob_vector(self, scores: Scores) -> npt.NDArray[np.float64] | None:
        if self.labels is None or scores.probabilities is None:
            return None
        probs = scores.probabilities
        if set(probs) != set(self.labels):
            raise ValueError(f"scores have labels {sorted(probs)}, smoother expects {sorted(self.labels)}")
        return np.array([probs[k] for k in self.labels], dtype=np.float64)

    def _neutral_vector(self) -> npt.NDArray[np.float64] | None:
        if self.labels is None:
            return None
        n = len(self.labels)
        if self.cfg.neutral_label in self.labels:
            out = np.zeros(n)
            out[self.labels.index(self.cfg.neutral_label)] = 1.0
            return out
        return np.full(n, 1.0 / n)

    def _values(self, t: float, switched: bool) -> SmoothedValues:
        probs = None
        if self._p is not None and self.labels is not None:
            probs = {k: float(x) for k, x in zip(self.labels, self._p, strict=True)}
        vad = None
        if self._v is not None:
            vad = (float(self._v[0]), float(self._v[1]), float(self._v[2]))
        return SmoothedValues(self._label, probs, vad, t, switched)
