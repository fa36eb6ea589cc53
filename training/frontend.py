"""In-graph audio front ends (STFT power, log-mel, MFCC) built from plain conv1d/matmul ops.

Engines take raw 16 kHz PCM, so features must live inside the ONNX graph. ``torch.stft`` exports
poorly (complex tensors, opset quirks), whereas a conv1d with a fixed windowed DFT basis exports
with dynamo as ordinary Conv/MatMul nodes that every runtime (ORT CPU/CUDA, TensorRT) handles and
that accept dynamic batch and length. All constant tensors are non-persistent buffers: they are
derived from the constructor arguments, so checkpoints stay small and never go stale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_FLOOR = 1e-6


def safe_log(x: torch.Tensor, floor: float = LOG_FLOOR) -> torch.Tensor:
    """log(max(x, floor)): silence (exact zeros) must give a finite value, never -inf or NaN."""
    return torch.log(torch.clamp(x, min=floor))


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float) -> np.ndarray:
    """Triangular HTK mel filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney style)."""
    n_freqs = n_fft // 2 + 1
    freqs = np.linspace(0.0, sample_rate / 2.0, n_freqs)
    mel_pts = np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fb = np.zeros((n_mels, n_freqs), dtype=np.float64)
    for m in range(n_mels):
        lo, mid, hi = hz_pts[m], hz_pts[m + 1], hz_pts[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [n_out, n_in] (the MFCC cepstral transform)."""
    n = np.arange(n_in)
    k = np.arange(n_out)[:, None]
    m = np.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m.astype(np.float32)


class STFTPower(nn.Module):
    """|STFT|^2 via a conv1d DFT basis: [B, N] -> [B, n_fft // 2 + 1, frames], centred frames."""

    basis: torch.Tensor

    def __init__(self, n_fft: int = 400, hop: int = 160, win: int = 400) -> None:
        super().__init__()
        if win > n_fft:
            raise ValueError(f"win ({win}) must not exceed n_fft ({n_fft})")
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.n_freqs = n_fft // 2 + 1
        window = np.zeros(n_fft)
        off = (n_fft - win) // 2
        window[off : off + win] = np.hanning(win + 1)[:-1]  # periodic Hann
        t = np.arange(n_fft)
        k = np.arange(self.n_freqs)[:, None]
        ang = 2.0 * math.pi * k * t / n_fft
        basis = np.concatenate([np.cos(ang) * window, -np.sin(ang) * window], axis=0)
        self.register_buffer(
            "basis", torch.from_numpy(basis.astype(np.float32)).unsqueeze(1), persistent=False
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.unsqueeze(1)
        pad = self.n_fft // 2
        x = F.pad(x, (pad, pad))  # constant padding: works for any length, even shorter than pad
        spec = F.conv1d(x, self.basis, stride=self.hop)
        re, im = spec[:, : self.n_freqs], spec[:, self.n_freqs :]
        return re * re + im * im


class LogMel(nn.Module):
    """Log-mel spectrogram [B, N] -> [B, n_mels, frames] (10 ms hop at 16 kHz by default)."""

    fbank: torch.Tensor

    def __init__(
        self,
        n_mels: int,
        n_fft: int = 400,
        hop: int = 160,
        win: int = 400,
        sample_rate: int = 16_000,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.stft = STFTPower(n_fft=n_fft, hop=hop, win=win)
        fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max or sample_rate / 2.0)
        self.register_buffer("fbank", torch.from_numpy(fb), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        power = self.stft(audio)  # [B, F, T]
        mel = torch.matmul(self.fbank, power)  # [n_mels, F] @ [B, F, T] -> [B, n_mels, T]
        return safe_log(mel)


class MFCC(nn.Module):
    """MFCCs [B, N] -> [B, n_mfcc * (3 if with_deltas else 1), frames]; deltas use a 5-frame regression."""

    dct: torch.Tensor
    delta_kernel: torch.Tensor

    def __init__(
        self,
        n_mfcc: int,
        with_deltas: bool = False,
        n_mels: int = 40,
        n_fft: int = 400,
        hop: int = 160,
        win: int = 400,
        sample_rate: int = 16_000,
    ) -> None:
        super().__init__()
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc ({n_mfcc}) must not exceed n_mels ({n_mels})")
        self.n_mfcc, self.with_deltas = n_mfcc, with_deltas
        self.logmel = LogMel(n_mels, n_fft=n_fft, hop=hop, win=win, sample_rate=sample_rate)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(n_mfcc, n_mels)), persistent=False)
        kernel = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]) / 10.0
        self.register_buffer("delta_kernel", kernel.repeat(n_mfcc, 1, 1), persistent=False)

    def _delta(self, x: torch.Tensor) -> torch.Tensor:
        # Edge-replicate by concatenating the end frames: exports as plain Concat/Slice nodes.
        first, last = x[:, :, :1], x[:, :, -1:]
        padded = torch.cat([first, first, x, last, last], dim=2)
        return F.conv1d(padded, self.delta_kernel, groups=self.n_mfcc)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        c = torch.matmul(self.dct, self.logmel(audio))  # [B, n_mfcc, T]
        if not self.with_deltas:
            return c
        d1 = self._delta(c)
        d2 = self._delta(d1)
        return torch.cat([c, d1, d2], dim=1)
