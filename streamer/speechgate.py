"""Window-level speech gate: is this window (about 2 s) speech, or a tone, hum, noise, music, clicks?

webrtcvad judges 30 ms frames and calls many loud non-speech sounds speech; a frame is too short to
tell. A whole window is not: speech is voiced only part of the time (syllables), its pitch moves all the
time (intonation, jitter), its level rises and falls at the syllable rate, and a voiced frame spreads
its energy over many harmonics. Tones, hum and synthesized music hold their pitch frozen; noise is not
voiced at all; a sine (even a chirp) puts its energy in one spectral peak; stationary sounds do not
modulate. Features are computed per 48 ms frame (16 ms hop) and summarised over the window:

- ``voiced``: share of frames with a normalised autocorrelation peak ≥ ``voicing`` at a lag of
  2–14 ms (70–500 Hz), after pre-emphasis (brown noise would otherwise look periodic);
- ``frozen``: share of consecutive voiced frame pairs whose pitch changes by < 0.15 %;
- ``peak``: median over loud frames of the energy share of the strongest spectral peak (±5 bins of 7.8 Hz);
- ``modulation``: std (dB) of the loud frames' level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.messages import SAMPLE_RATE, FloatArray

_FRAME = 768  # 48 ms: two periods of a 70 Hz voice
_HOP = 256
_NFFT = 1024  # >= frame + max lag: the autocorrelation is not circular
_NFFT_PEAK = 2048
_LAG_MIN = SAMPLE_RATE // 500
_LAG_MAX = SAMPLE_RATE // 70
_FROZEN = 0.0015  # relative pitch change below which two frames hold the same pitch
_LOUD_DB = -70.0  # frames quieter than this (dBFS) are silence ...
_RANGE_DB = 35.0  # ... and so are frames this far below the window's loudest
_BAND = (100.0, 4000.0)


@dataclass(frozen=True, slots=True)
class GateThresholds:
    """What a window needs to count as speech (see ``VadConfig.window_gate_*``)."""

    voiced_min: float = 0.05
    voicing: float = 0.5
    frozen_max: float = 0.5
    peak_max: float = 1.0  # off: chosen on dev figures (docs/abstention.md)
    modulation_min: float = 2.0


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    loud: float  # share of frames above the silence level
    voiced: float
    frozen: float
    peak: float
    modulation: float

    def is_speech(self, t: GateThresholds) -> bool:
        return (
            self.voiced >= t.voiced_min
            and self.frozen <= t.frozen_max
            and self.peak <= t.peak_max
            and self.modulation >= t.modulation_min
        )


def _frames(x: FloatArray) -> npt.NDArray[np.float64]:
    if len(x) < _FRAME:
        x = np.pad(x, (0, _FRAME - len(x)))
    n = 1 + (len(x) - _FRAME) // _HOP
    idx = np.arange(_FRAME)[None, :] + _HOP * np.arange(n)[:, None]
    return np.asarray(x, dtype=np.float64)[idx]


_WIN = np.hanning(_FRAME)
_W_ACF = np.correlate(_WIN, _WIN, "full")[_FRAME - 1 : _FRAME + _LAG_MAX + 1]


def window_features(samples: FloatArray, voicing: float = 0.5, with_peak: bool = True) -> WindowFeatures:
    """The gate's features of one window of 16 kHz mono audio (``peak`` = 0 unless ``with_peak``:
    it costs another FFT and the default gate does not check it)."""
    frames = _frames(samples)
    level = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = (level >= _LOUD_DB) & (level >= level.max() - _RANGE_DB)
    if not loud.any():
        return WindowFeatures(0.0, 0.0, 0.0, 0.0, 0.0)
    win = _WIN
    f = frames - frames.mean(axis=1, keepdims=True)
    emph = np.concatenate([f[:, :1], f[:, 1:] - 0.95 * f[:, :-1]], axis=1) * win
    acf = np.fft.irfft(np.abs(np.fft.rfft(emph, _NFFT, axis=1)) ** 2, _NFFT, axis=1)[:, : _LAG_MAX + 2]
    norm = acf / np.maximum(acf[:, :1], 1e-12) * (_W_ACF[0] / np.maximum(_W_ACF, 1e-12))
    seg = norm[:, _LAG_MIN : _LAG_MAX + 1]
    k = np.argmax(seg, axis=1)
    r = seg[np.arange(len(seg)), k]
    lag = (k + _LAG_MIN).astype(np.float64)
    i = np.flatnonzero((k > 0) & (k < seg.shape[1] - 1))
    a, b, c = seg[i, k[i] - 1], seg[i, k[i]], seg[i, k[i] + 1]
    den = a - 2 * b + c
    lag[i] += np.where(den < -1e-12, 0.5 * (a - c) / np.where(den < -1e-12, den, -1.0), 0.0)
    voiced = loud & (r >= voicing)
    pairs = voiced[1:] & voiced[:-1]
    change = np.abs(np.diff(np.log(lag)))
    frozen = float((change[pairs] < _FROZEN).mean()) if pairs.any() else 0.0
    peak = _peak_share(f[loud]) if with_peak else 0.0
    return WindowFeatures(
        loud=float(loud.mean()),
        voiced=float(voiced.sum() / len(frames)),
        frozen=frozen,
        peak=peak,
        modulation=float(np.std(level[loud])),
    )


def _peak_share(f: npt.NDArray[np.float64]) -> float:
    power = np.abs(np.fft.rfft(f * _WIN, _NFFT_PEAK, axis=1)) ** 2
    freqs = np.fft.rfftfreq(_NFFT_PEAK, 1.0 / SAMPLE_RATE)
    band = power[:, (freqs >= _BAND[0]) & (freqs <= _BAND[1])] + 1e-12
    c = np.cumsum(np.pad(band, ((0, 0), (6, 5))), axis=1)
    return float(np.median((c[:, 11:] - c[:, :-11]).max(axis=1) / band.sum(axis=1)))


class WindowGate:
    """Judges whole windows; counts what it rejected."""

    def __init__(self, thresholds: GateThresholds) -> None:
        self.thresholds = thresholds
        self.windows = 0
        self.rejected = 0

    def is_speech(self, samples: FloatArray) -> bool:
        self.windows += 1
        t = self.thresholds
        ok = window_features(samples, t.voicing, with_peak=t.peak_max < 1.0).is_speech(t)
        self.rejected += not ok
        return ok


__all__ = ["GateThresholds", "WindowFeatures", "WindowGate", "window_features"]
