"""In-graph prosody features (torch, ONNX-exportable): energy, pitch, voicing, ZCR, spectral shape.

Every operation is a convolution, pooling, matmul or elementwise op, so the features run inside the engine
graph (the daemon never computes features itself). One frame every 10 ms over a 40 ms analysis window:
  0 log energy          log mean x^2
  1 voicing             max normalised autocorrelation over 50-500 Hz lags (Boersma 1993 window correction)
  2 log f0              log of a sharp soft-argmax pitch (Hz) over the same lags, with Praat's octave cost
  3 zero-crossing rate  fraction of sign changes
  4 log RMS frequency   fs/2pi * sqrt(E[dx^2]/E[x^2]) (second-moment spectral centroid, Rice's formula)
  5 low-band ratio      log(E[0-1.8 kHz] / E[total]) (spectral tilt, like eGeMAPS' alpha ratio)
Pitch works on a 4 kHz decimated copy; its autocorrelation is the inverse DFT of the power spectrum
(Wiener-Khinchin) computed as a matmul, which is far cheaper than per-lag products.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
WIN = 640  # 40 ms
N_FEATURES = 6
FEATURE_NAMES = ("log_energy", "voicing", "log_f0", "zcr", "log_rms_freq", "lowband_ratio")


def _lowpass_taps(n_taps: int, cutoff: float) -> Tensor:
    """Hamming-windowed sinc low-pass FIR; cutoff as a fraction of the sample rate."""
    n = torch.arange(n_taps, dtype=torch.float64) - (n_taps - 1) / 2
    h = (
        2
        * cutoff
        * torch.sinc(2 * cutoff * n)
        * torch.hamming_window(n_taps, periodic=False, dtype=torch.float64)
    )
    return (h / h.sum()).float()


class Prosody(nn.Module):
    """audio [B, N] (16 kHz) -> features [B, 6, T], T = 1 + N // 160 (centred frames, like `LogMel`)."""

    lowpass: Tensor
    dft: Tensor
    cos_lag: Tensor
    r0_weights: Tensor
    window_ac: Tensor
    lag_hz: Tensor
    lag_cost: Tensor

    def __init__(
        self, fmin: float = 50.0, fmax: float = 500.0, sharpness: float = 200.0, octave_cost: float = 0.05
    ) -> None:
        super().__init__()
        self.decim = 4
        self.low_sr = SAMPLE_RATE // self.decim  # 4 kHz
        self.frame = WIN // self.decim  # 160 samples = 40 ms
        self.n_fft = 2 * self.frame  # zero-padded: linear (not circular) autocorrelation
        self.sharpness = sharpness
        n_bins = self.n_fft // 2 + 1
        self.register_buffer("lowpass", _lowpass_taps(64, 1800.0 / SAMPLE_RATE).view(1, 1, 64))
        window = torch.hann_window(self.frame, periodic=False, dtype=torch.float64)
        t = torch.arange(self.frame, dtype=torch.float64)
        f = torch.arange(n_bins, dtype=torch.float64)
        ang = 2 * math.pi * f[:, None] * t[None, :] / self.n_fft
        basis = torch.cat([torch.cos(ang) * window, -torch.sin(ang) * window], dim=0)
        self.register_buffer("dft", basis.float().unsqueeze(1))  # [2F, 1, frame]
        lo = max(1, math.floor(self.low_sr / fmax))
        hi = min(self.frame - 1, math.ceil(self.low_sr / fmin))
        lags = torch.arange(lo, hi + 1, dtype=torch.float64)
        # one-sided power spectrum weights: DC and Nyquist once, other bins twice
        wts = torch.full((n_bins,), 2.0, dtype=torch.float64)
        wts[0] = 1.0
        wts[-1] = 1.0
        cos_lag = torch.cos(2 * math.pi * lags[:, None] * f[None, :] / self.n_fft) * wts / self.n_fft
        self.register_buffer("cos_lag", cos_lag.float())  # [L, F]
        self.register_buffer("r0_weights", (wts / self.n_fft).float().view(1, n_bins, 1))
        # autocorrelation of the window itself, to undo its taper (Boersma 1993)
        w_ac = torch.stack([(window[: self.frame - int(k)] * window[int(k) :]).sum() for k in lags])
        self.register_buffer("window_ac", (w_ac / (window * window).sum()).float().view(1, -1, 1))
        self.register_buffer("lag_hz", (self.low_sr / lags).float().view(1, -1, 1))
        # Praat-style octave cost: equal peaks at multiples of the period favour the shortest lag
        self.register_buffer("lag_cost", (octave_cost * torch.log2(lags / lo)).float().view(1, -1, 1))

    def forward(self, audio: Tensor) -> Tensor:
        eps = 1e-7  # not 1e-8: the ONNX optimizer drops x + c for |c| <= 1e-8 (NaN on silence)
        x = F.pad(audio.unsqueeze(1), (WIN // 2, WIN // 2))  # [B, 1, N + 640]: any length works
        energy = F.avg_pool1d(x * x, WIN, HOP)  # [B, 1, T]
        signs = torch.sign(x)
        crossings = F.pad(torch.abs(signs[..., 1:] - signs[..., :-1]) * 0.5, (0, 1))
        zcr = F.avg_pool1d(crossings, WIN, HOP)
        dx = F.pad(x[..., 1:] - x[..., :-1], (0, 1))
        d_energy = F.avg_pool1d(dx * dx, WIN, HOP)
        rms_freq = SAMPLE_RATE / (2 * math.pi) * torch.sqrt(d_energy / (energy + eps) + eps)

        low = F.conv1d(x, self.lowpass, stride=self.decim, padding=30)  # [B, 1, N // 4]
        low_energy = F.avg_pool1d(low * low, self.frame, HOP // self.decim)
        spec = F.conv1d(low, self.dft, stride=HOP // self.decim)  # [B, 2F, T]
        n_bins = spec.shape[1] // 2
        power = spec[:, :n_bins] ** 2 + spec[:, n_bins:] ** 2
        r0 = (power * self.r0_weights).sum(dim=1, keepdim=True)  # [B, 1, T]
        r = torch.matmul(self.cos_lag, power)  # [B, L, T]
        rn = (r / (r0 + eps)) / self.window_ac
        voicing = rn.amax(dim=1, keepdim=True).clamp(0.0, 1.0)
        weights = torch.softmax((rn - self.lag_cost) * self.sharpness, dim=1)
        f0 = (weights * self.lag_hz).sum(dim=1, keepdim=True)

        feats = [
            torch.log(energy + eps),
            voicing,
            torch.log(f0),
            zcr,
            torch.log(rms_freq + 1.0),
            torch.log((low_energy + eps) / (energy + eps)).clamp(-10.0, 1.0),
        ]
        return torch.cat(feats, dim=1)


def n_frames(n_samples: int) -> int:
    """Number of prosody frames for a signal of n_samples (the same count as a centred 10 ms STFT)."""
    return 1 + n_samples // HOP
