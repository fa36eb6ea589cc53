"""Codec and channel augmentation, so that a corpus's recording chain cannot stand in for its emotions.

ASED and nEMO reach us as Ogg Opus, RAVDESS and TESS as FLAC: a model can learn "lossy codec" as a cue for
the languages and speakers behind it. Users' audio comes through phones, VoIP codecs, rooms and cheap
microphones. Each training copy goes through a random chain of real codecs (Opus and MP3 at random
quality, encoded and decoded by libsndfile), a G.711-like telephone band, gain, noise and reverberation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from scipy.signal import butter, fftconvolve, sosfilt

SAMPLE_RATE = 16_000
Audio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ChannelConfig:
    """Probability of each stage of the chain and its range (dB, seconds, quality in [0, 1])."""

    p_codec: float = 0.6  # Opus or MP3 round trip, quality uniform in codec_quality
    codec_quality: tuple[float, float] = (0.0, 1.0)
    p_telephone: float = 0.25  # 300-3400 Hz, 8 kHz, mu-law 8 bit
    p_reverb: float = 0.3
    rt60_s: tuple[float, float] = (0.15, 0.7)
    p_noise: float = 0.4
    snr_db: tuple[float, float] = (8.0, 30.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)

    def __post_init__(self) -> None:
        for name in ("p_codec", "p_telephone", "p_reverb", "p_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")


def codec_round_trip(x: Audio, codec: str, quality: float) -> Audio:
    """Encode and decode with a real lossy codec: ``opus`` or ``mp3``; ``quality`` 0 = best, 1 = worst."""
    fmt, subtype = {"opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III")}[codec]
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=float(quality))
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y if y.ndim == 1 else y.mean(axis=1)
    out = np.zeros_like(x)
    n = min(len(x), len(y))
    out[:n] = y[:n]
    return out


def telephone(x: Audio) -> Audio:
    """Narrow-band telephone: 300-3400 Hz, resampled through 8 kHz, mu-law companded to 8 bits."""
    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    y = soxr.resample(sosfilt(sos, x).astype(np.float32), SAMPLE_RATE, 8000)
    mu = 255.0
    comp = np.sign(y) * np.log1p(mu * np.minimum(np.abs(y), 1.0)) / np.log1p(mu)
    comp = np.round(comp * 127.0) / 127.0
    y = np.sign(comp) * ((1.0 + mu) ** np.abs(comp) - 1.0) / mu
    back = soxr.resample(y.astype(np.float32), 8000, SAMPLE_RATE)
    out = np.zeros_like(x)
    n = min(len(x), len(back))
    out[:n] = back[:n]
    return out


def reverberate(x: Audio, rt60_s: float, rng: np.random.Generator) -> Audio:
    """Convolve with a synthetic room response: exponentially decaying noise with the given RT60."""
    n = max(int(rt60_s * SAMPLE_RATE), 16)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    rir[0] = 1.0
    rir /= np.sqrt(np.sum(rir**2))
    y = fftconvolve(x, rir)[: len(x)]
    peak = max(float(np.max(np.abs(y))), 1e-7)
    return (y * min(1.0, float(np.max(np.abs(x))) / peak)).astype(np.float32)


def add_noise(x: Audio, snr_db: float, rng: np.random.Generator) -> Audio:
    """White or pink noise at ``snr_db`` below the signal's power."""
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink: 1/f power by shaping the spectrum
        spec = np.fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        noise = np.fft.irfft(spec, n=len(x))
    p_signal = float(np.mean(x.astype(np.float64) ** 2)) + 1e-10
    p_noise = float(np.mean(noise**2)) + 1e-12
    return (x + noise * np.sqrt(p_signal / p_noise / 10.0 ** (snr_db / 10.0))).astype(np.float32)


def augment_channel(x: Audio, rng: np.random.Generator, cfg: ChannelConfig | None = None) -> Audio:
    """One random recording chain applied to 16 kHz mono audio; the length is kept."""
    cfg = cfg or ChannelConfig()
    y = np.asarray(x, dtype=np.float32)
    if rng.random() < cfg.p_reverb:
        y = reverberate(y, float(rng.uniform(*cfg.rt60_s)), rng)
    if rng.random() < cfg.p_noise:
        y = add_noise(y, float(rng.uniform(*cfg.snr_db)), rng)
    y = y * np.float32(10.0 ** (rng.uniform(*cfg.gain_db) / 20.0))
    y = np.clip(y, -1.0, 1.0)
    if rng.random() < cfg.p_telephone:
        y = telephone(y)
    if rng.random() < cfg.p_codec:
        y = codec_round_trip(
            y, "opus" if rng.random() < 0.5 else "mp3", float(rng.uniform(*cfg.codec_quality))
        )
    return np.clip(y, -1.0, 1.0).astype(np.float32)
