"""Utterance-level functionals (eGeMAPS-like statistics) computed inside the engine graph.

The openSMILE eGeMAPS + logistic regression baseline shows that a handful of whole-utterance statistics of
pitch, loudness, spectral shape and MFCCs already separate the four classes well; a sequence model with
per-utterance instance norm throws exactly those absolute levels away. This module restores them as a
second, utterance-level branch: activity- and voicing-weighted means and standard deviations of the raw
prosody tracks, of their frame deltas and of MFCCs 1-12, plus soft percentiles (80/50/20 %) of pitch and
loudness and the voiced fraction. Only reductions, matmuls and elementwise ops: it exports to ONNX and works
for any window length, digital silence included (every division and root is guarded with eps >= 1e-7).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.frontend import dct_matrix
from training.prosody import N_FEATURES

EPS = 1e-7  # not 1e-8: the ONNX optimiser folds x + c away for |c| <= 1e-8
N_MFCC = 12  # MFCC 1..12 (c0 is loudness, already in the prosody tracks)
QUANTILES = (0.8, 0.5, 0.2)  # this order is part of the trained engines' input layout
TIE_WEIGHT = 1e-4  # ~0.1 % of a typical kernel mass
ACTIVE_RANGE = 5.0  # frames within ~22 dB (natural-log energy units) of the loudest count as active


def weighted_stats(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std of x [B, C, T] over time under non-negative weights w [B, 1, T]."""
    total = w.sum(dim=-1) + EPS  # [B, 1]
    mean = (x * w).sum(dim=-1) / total
    var = (x * x * w).sum(dim=-1) / total - mean * mean
    return mean, torch.sqrt(var.clamp(min=1e-6))


def soft_quantiles(x: Tensor, w: Tensor, qs: tuple[float, ...], temperature: float = 0.05) -> Tensor:
    """Differentiable weighted quantiles of x [B, T] under weights w [B, T]: for each q, the weighted mean of
    the frames whose weighted CDF position is near q (a Gaussian kernel over the rank), no sort needed."""
    wn = w / (w.sum(dim=-1, keepdim=True) + EPS)
    below = (torch.sigmoid((x[:, :, None] - x[:, None, :]) / 0.05) * wn[:, None, :]).sum(dim=-1)  # [B, T]
    out = []
    mean = (wn * x).sum(dim=-1)
    for q in qs:
        k = torch.exp(-(((below - q) / temperature) ** 2)) * wn
        # a faint pull to the mean: where all frames tie (a flat track) no rank is near q
        out.append(((k * x).sum(dim=-1) + TIE_WEIGHT * mean) / (k.sum(dim=-1) + TIE_WEIGHT))
    return torch.stack(out, dim=-1)  # [B, len(qs)]


class Functionals(nn.Module):
    """(raw prosody [B, 6, T], log-mel [B, M, T]) -> functionals [B, n_out]."""

    dct: Tensor

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.register_buffer("dct", torch.from_numpy(dct_matrix(N_MFCC + 1, n_mels))[1:], persistent=False)
        # 6 tracks and 6 deltas (mean + std, active frames), MFCC mean + std, pitch/loudness quantiles,
        # pitch mean + std over voiced frames, voiced fraction
        self.n_out = 4 * N_FEATURES + 2 * N_MFCC + 2 * len(QUANTILES) + 3

    def forward(self, pros: Tensor, logmel: Tensor) -> Tensor:
        t = min(pros.shape[-1], logmel.shape[-1])
        pros, logmel = pros[..., :t], logmel[..., :t]
        log_e = pros[:, :1]  # [B, 1, T]
        voicing = pros[:, 1:2]
        active = torch.sigmoid(2.0 * (log_e - log_e.amax(dim=-1, keepdim=True) + ACTIVE_RANGE))
        voiced = active * torch.sigmoid(20.0 * (voicing - 0.5))
        # loudness relative to the utterance's active mean: a mic's gain must not shift the functionals
        log_e = log_e - (log_e * active).sum(dim=-1, keepdim=True) / (active.sum(dim=-1, keepdim=True) + EPS)
        pros = torch.cat([log_e, pros[:, 1:]], dim=1)
        delta = torch.cat([pros[..., 1:] - pros[..., :-1], torch.zeros_like(pros[..., :1])], dim=-1)
        mfcc = torch.matmul(self.dct, logmel)  # [B, 12, T]
        p_mean, p_std = weighted_stats(pros, active)
        d_mean, d_std = weighted_stats(delta, active)
        m_mean, m_std = weighted_stats(mfcc, active)
        f0_mean, f0_std = weighted_stats(pros[:, 2:3], voiced)
        f0_q = soft_quantiles(pros[:, 2], voiced[:, 0] + EPS, QUANTILES)
        e_q = soft_quantiles(log_e[:, 0], active[:, 0], QUANTILES)
        voiced_frac = voiced.sum(dim=-1) / (active.sum(dim=-1) + EPS)
        return torch.cat(
            [p_mean, p_std, d_mean, d_std, m_mean, m_std, f0_q, e_q, f0_mean, f0_std, voiced_frac], dim=-1
        )


class FunctionalsBranch(nn.Module):
    """Functionals -> batch-normalised -> small MLP embedding [B, d] for fusion with the sequence branch."""

    def __init__(self, n_mels: int, d: int, dropout: float) -> None:
        super().__init__()
        self.functionals = Functionals(n_mels)
        self.norm = nn.BatchNorm1d(self.functionals.n_out)
        self.mlp = nn.Sequential(nn.Linear(self.functionals.n_out, d), nn.GELU(), nn.Dropout(dropout))

    def forward(self, pros: Tensor, logmel: Tensor) -> Tensor:
        return self.mlp(self.norm(self.functionals(pros, logmel)))
