"""Per-stream score centring: adapts the engine's class scores to the voice of the stream's speaker.

An engine trained on a few dozen speakers mistakes a voice for an emotion (a low, slow voice reads as
sad, a bright one as happy). A stream hears the same speaker for a long time, so the offset can be
estimated from the stream itself: its running mean log-probability. Each window is centred on what
came before it (never on itself or on later audio), ramped in over a warm-up, and the reference starts
again after a long silence, when another speaker may follow. A plain mean assumes the stream's emotions
are roughly balanced; half strength and the 30 s warm-up keep a stream that holds one emotion, or is mostly
calm, from being pushed away from it (validated on mixed, held and mostly-neutral streams, docs/track.md).
``gate`` below 1 learns only from windows the engine is unsure of (a confidence-gated update, docs/track.md).
``enabled = false`` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Estimator = Literal["mean", "balanced"]
FloatArray = npt.NDArray[np.float64]

_FLOOR = 1e-6  # probabilities are clipped here before the log, so a hard zero stays finite


@dataclass(frozen=True, slots=True)
class CentringConfig:
    """The ``[centring]`` section. The defaults are the pick of the rule in docs/track.md for the default
    engine 2.0, on streams of speakers it never heard: strength 1, 30 s warm-up, plain mean, and a
    confidence gate (only windows the engine is unsure of, top probability below 0.6, teach the reference,
    so a speaker who holds one emotion keeps it)."""

    enabled: bool = True  # centre each stream's class scores on its running mean
    strength: float = 1.0  # fraction of the stream's offset removed, 0..1
    warmup_s: float = 30.0  # speech seconds over which the strength ramps in
    horizon_s: float = 600.0  # speech seconds the running mean spans (exponential beyond)
    reset_after_s: float = 120.0  # a silence this long starts a new reference (another speaker)
    estimator: Estimator = "mean"  # balanced: the mean of per-class means
    gate: float = 0.6  # only windows whose top probability is below this teach the reference (1: all)

    def __post_init__(self) -> None:
        numbers = (self.strength, self.warmup_s, self.horizon_s, self.reset_after_s)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"centring settings must be finite numbers (got {numbers!r})")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"centring.strength must be in [0, 1] (got {self.strength!r})")
        if self.warmup_s < 0.0:
            raise ValueError(f"centring.warmup_s must be >= 0 (got {self.warmup_s!r})")
        if self.horizon_s < 1.0:
            raise ValueError(f"centring.horizon_s must be >= 1 (got {self.horizon_s!r})")
        if self.reset_after_s < 0.0:
            raise ValueError(f"centring.reset_after_s must be >= 0 (got {self.reset_after_s!r})")
        if not 0.0 < self.gate <= 1.0:
            raise ValueError(f"centring.gate must be in (0, 1] (got {self.gate!r})")
        if self.estimator not in ("mean", "balanced"):
            raise ValueError(f"centring.estimator must be 'mean' or 'balanced' (got {self.estimator!r})")


class _RunningMean:
    """A duration-weighted mean: cumulative up to ``horizon_s`` of audio, exponential beyond it."""

    def __init__(self, n: int, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.mean: FloatArray = np.zeros(n)
        self.seconds = 0.0

    def add(self, x: FloatArray, seconds: float) -> None:
        total = self.seconds + seconds
        self.mean += (seconds / total) * (x - self.mean)
        self.seconds = min(total, self.horizon_s)


class StreamCentring:
    """One stream's reference; ``adapt`` centres a window's log-probabilities and then learns from it."""

    def __init__(self, n_classes: int, cfg: CentringConfig) -> None:
        if n_classes < 2:
            raise ValueError(f"centring needs at least two classes (got {n_classes})")
        self.cfg = cfg
        self.n_classes = n_classes
        self._clear()
        self.resets = 0

    @property
    def speech_seconds(self) -> float:
        """Speech heard since the last reset (capped at the horizon)."""
        return self._all.seconds

    def offset(self) -> FloatArray:
        """What is subtracted from the next window's log-probabilities."""
        if self._all.seconds <= 0.0:
            return np.zeros(self.n_classes)
        ramp = 1.0 if self.cfg.warmup_s == 0.0 else min(1.0, self._all.seconds / self.cfg.warmup_s)
        return (self.cfg.strength * ramp) * self._reference()

    def adapt(self, log_probs: npt.ArrayLike, seconds: float) -> FloatArray:
        """Centre one window (``seconds`` = audio it adds to the stream) on the earlier ones."""
        x = np.asarray(log_probs, dtype=np.float64)
        if x.shape != (self.n_classes,) or not np.all(np.isfinite(x)):
            raise ValueError(f"centring expects {self.n_classes} finite log-probabilities (got {x!r})")
        centred = x - self.offset()
        if seconds > 0.0 and self._teaches(x):
            self._all.add(x, seconds)
            self._per_class[int(np.argmax(centred))].add(x, seconds)
        return centred

    def adapt_probabilities(self, probs: npt.ArrayLike, seconds: float) -> FloatArray:
        """As ``adapt``, from and to probabilities (what the streamer's scores carry)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), _FLOOR, 1.0)
        centred = self.adapt(np.log(p / p.sum()), seconds)
        e = np.exp(centred - centred.max())
        out: FloatArray = e / e.sum()
        return out

    def _teaches(self, x: FloatArray) -> bool:
        """A confident window is likely a real emotion, not the voice: with a gate below 1 it is not learned
        from, so a speaker who holds one emotion does not become the reference."""
        if self.cfg.gate >= 1.0:
            return True
        p = np.exp(x - np.logaddexp.reduce(x))
        return bool(p.max() < self.cfg.gate)

    def silence(self, seconds: float) -> None:
        """A pause of ``seconds`` with no speech; a long one forgets the speaker."""
        if seconds >= self.cfg.reset_after_s and self._all.seconds > 0.0:
            self.reset()

    def reset(self) -> None:
        self._clear()
        self.resets += 1

    def _clear(self) -> None:
        self._all = _RunningMean(self.n_classes, self.cfg.horizon_s)
        self._per_class = [_RunningMean(self.n_classes, self.cfg.horizon_s) for _ in range(self.n_classes)]

    def _reference(self) -> FloatArray:
        if self.cfg.estimator == "mean":
            return self._all.mean.copy()
        seen = [m.mean for m in self._per_class if m.seconds > 0.0]
        return np.mean(seen, axis=0) if seen else np.zeros(self.n_classes)
