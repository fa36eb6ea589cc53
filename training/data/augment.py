"""Waveform augmentation for training: noise at a random SNR, synthetic reverberation, gain, speed and
pitch perturbation. The streamer hears laptops, phones and rooms, the corpora are studio recordings: these
perturbations narrow that gap. Everything works on mono float32 numpy arrays at one sample rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import soxr


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """signal + noise scaled so that 10*log10(P_signal / P_noise) == snr_db (noise tiled/cut to length)."""
    if len(noise) < len(signal):
        noise = np.tile(noise, int(np.ceil(len(signal) / max(len(noise), 1))))
    noise = noise[: len(signal)]
    p_sig = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    if p_sig <= 0.0 or p_noise <= 0.0:
        return signal.copy()
    scale = np.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (signal + scale * noise).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise, unit variance."""
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain, unit variance."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    std = float(np.std(x))
    return (x / std if std > 0 else x).astype(np.float32)


def babble_noise(
    n: int, pool: Sequence[np.ndarray], rng: np.random.Generator, talkers: int = 4
) -> np.ndarray:
    """Several other utterances summed at random offsets: the 'cocktail party' background."""
    out = np.zeros(n, dtype=np.float32)
    for _ in range(talkers):
        src = pool[int(rng.integers(len(pool)))]
        if len(src) == 0:
            continue
        tiled = np.tile(src, int(np.ceil((n + len(src)) / len(src))))
        start = int(rng.integers(len(src)))
        seg = tiled[start : start + n]
        rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
        if rms > 0:
            out += seg / rms
    return out


def synthetic_rir(sample_rate: int, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """Room impulse response: a direct-path impulse followed by exponentially decaying noise (60 dB down at
    rt60_s), the classic statistical model of late reverberation."""
    n = max(int(rt60_s * sample_rate), 2)
    t = np.arange(n) / sample_rate
    decay = np.exp(-6.907755 * t / rt60_s)  # ln(1000): amplitude -60 dB at rt60
    ir = rng.standard_normal(n) * decay * 0.3
    ir[0] = 1.0
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution via the FFT, cut to len(x)."""
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]
    return y.astype(np.float32)


def change_speed(x: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, like sox `speed`) by resampling."""
    if abs(factor - 1.0) < 1e-6 or len(x) < 2:
        return x.astype(np.float32)
    return soxr.resample(x, sample_rate * factor, sample_rate).astype(np.float32)


def time_stretch(x: np.ndarray, rate: float, frame: int = 512) -> np.ndarray:
    """WSOLA time-scale modification: `rate` > 1 shortens; pitch is kept. Each output frame is the input frame
    near its nominal position that best continues the previous one (cross-correlation), overlap-added with a
    Hann window at 50% overlap."""
    if abs(rate - 1.0) < 1e-6 or len(x) < 2 * frame:
        return x.astype(np.float32)
    hop = frame // 2
    tol = frame // 4
    win = np.hanning(frame).astype(np.float32)
    out_len = int(len(x) / rate)
    n_frames = max(out_len // hop - 1, 1)
    padded = np.concatenate(
        [np.zeros(tol, np.float32), x.astype(np.float32), np.zeros(frame + tol, np.float32)]
    )
    y = np.zeros(n_frames * hop + frame, dtype=np.float32)
    norm = np.zeros_like(y)
    prev_tail = None
    for k in range(n_frames):
        nominal = int(k * hop * rate) + tol
        best = nominal
        if prev_tail is not None:
            lo, hi = max(nominal - tol, 0), min(nominal + tol, len(padded) - frame)
            if hi > lo:
                region = padded[lo : hi + hop]
                corr = np.correlate(region, prev_tail, mode="valid")
                best = lo + int(np.argmax(corr))
        seg = padded[best : best + frame]
        y[k * hop : k * hop + frame] += seg * win
        norm[k * hop : k * hop + frame] += win
        prev_tail = padded[best + hop : best + hop + hop]
    out = y / np.maximum(norm, np.float32(1e-3))
    return out[:out_len].astype(np.float32)


def shift_pitch(x: np.ndarray, semitones: float, sample_rate: int) -> np.ndarray:
    """Pitch up/down by `semitones` keeping the duration: resample (pitch and tempo), then WSOLA the tempo
    back."""
    if abs(semitones) < 1e-3 or len(x) < 2:
        return x.astype(np.float32)
    factor = 2.0 ** (semitones / 12.0)
    y = change_speed(x, factor, sample_rate)
    y = time_stretch(y, 1.0 / factor)
    return fit_length(y, len(x))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad at the end to exactly n samples."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - len(x), dtype=x.dtype)])


class AugmentConfigError(ValueError):
    """Augmentation settings that cannot work (one-line message naming the setting)."""


@dataclass
class Augmenter:
    """Random chain of perturbations; each applied with its own probability, parameters drawn uniformly.

    `babble_pool` supplies other utterances for babble noise (white/pink otherwise); `keep_length` fits the
    output to the input length (speed perturbation changes it otherwise).
    """

    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    noise_prob: float = 0.5
    noise_kinds: tuple[str, ...] = ("white", "pink", "babble")
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.15, 0.8)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    gain_prob: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)
    speed_prob: float = 0.3
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    pitch_prob: float = 0.3
    sample_rate: int = 16000
    keep_length: bool = True
    babble_pool: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        probs = (self.noise_prob, self.reverb_prob, self.gain_prob, self.speed_prob, self.pitch_prob)
        if any(not 0.0 <= p <= 1.0 for p in probs):
            raise AugmentConfigError("augmentation probabilities must lie in [0, 1]")
        bad = set(self.noise_kinds) - {"white", "pink", "babble"}
        if bad:
            raise AugmentConfigError(
                f"unknown noise kind(s): {', '.join(sorted(bad))} (use white, pink, babble)"
            )
        if self.speed[0] <= 0:
            raise AugmentConfigError("speed factors must be positive")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augmented copy of x (mono float32), finite and within [-1, 1]."""
        n = len(x)
        y = np.nan_to_num(x.astype(np.float32, copy=True))
        if n == 0:
            return y
        if rng.random() < self.speed_prob:
            y = change_speed(y, float(rng.uniform(*self.speed)), self.sample_rate)
        if rng.random() < self.pitch_prob:
            y = shift_pitch(y, float(rng.uniform(*self.pitch_semitones)), self.sample_rate)
        if rng.random() < self.reverb_prob:
            peak = float(np.max(np.abs(y))) if len(y) else 0.0
            y = fft_convolve(y, synthetic_rir(self.sample_rate, float(rng.uniform(*self.rt60_s)), rng))
            new_peak = float(np.max(np.abs(y))) if len(y) else 0.0
            if new_peak > 0 and peak > 0:
                y *= peak / new_peak
        if rng.random() < self.noise_prob:
            y = mix_at_snr(y, self._noise(len(y), rng), float(rng.uniform(*self.noise_snr_db)))
        if rng.random() < self.gain_prob:
            y = y * np.float32(10.0 ** (float(rng.uniform(*self.gain_db)) / 20.0))
        if self.keep_length:
            y = fit_length(y, n)
        return np.clip(np.nan_to_num(y), -1.0, 1.0).astype(np.float32)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        kinds = [k for k in self.noise_kinds if k != "babble" or self.babble_pool] or ["white"]
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "babble":
            return babble_noise(n, self.babble_pool, rng)
        return pink_noise(n, rng) if kind == "pink" else white_noise(n, rng)


TUNABLE = ("noise_snr_db", "noise_prob", "noise_kinds", "reverb_prob", "rt60_s", "gain_db", "gain_prob",
           "speed", "speed_prob", "pitch_semitones", "pitch_prob")  # fmt: skip


def augmenter_from_options(options: Mapping[str, Any], babble_pool: list[np.ndarray]) -> Augmenter:
    """An `Augmenter` with the defaults overridden by a config's `augment_options` (ranges as 2-lists)."""
    bad = sorted(set(options) - set(TUNABLE))
    if bad:
        raise AugmentConfigError(
            f"unknown augment_options key(s) {', '.join(bad)} (known: {', '.join(TUNABLE)})"
        )
    defaults = {f.name: f.default for f in fields(Augmenter)}
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key == "noise_kinds":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AugmentConfigError("augment_options.noise_kinds must be a list of names")
            kwargs[key] = tuple(value)
        elif isinstance(defaults[key], tuple):  # a (low, high) range
            if not isinstance(value, list) or len(value) != 2 or not all(_is_number(v) for v in value):
                raise AugmentConfigError(f"augment_options.{key} must be a [low, high] pair of numbers")
            if value[0] > value[1]:
                raise AugmentConfigError(f"augment_options.{key}: low {value[0]} is above high {value[1]}")
            kwargs[key] = (float(value[0]), float(value[1]))
        else:
            if not _is_number(value):
                raise AugmentConfigError(f"augment_options.{key} must be a number, got {value!r}")
            if key.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise AugmentConfigError(f"augment_options.{key} must lie in [0, 1], got {value}")
            kwargs[key] = float(value)
    return Augmenter(babble_pool=babble_pool, **kwargs)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
