"""`realtime`: emotrack's default engine model, small enough for dozens of streams on two CPU cores.

Two in-graph feature streams, each normalised per utterance (instance norm over time, so a different mic or
gain shifts nothing): a 64-band log-mel spectrogram and six prosody tracks (`training.prosody`). Both go
through strided depthwise-separable 1-D conv stacks to 40 ms tokens; the spectral tokens query the prosody
tokens by cross-attention and a learned sigmoid gate decides, per channel and frame, how much prosody to mix
in. Attentive statistics pooling (weighted mean and std over time) lets the model ignore silence and works for
any window length. Heads: categorical logits and V/A/D through tanh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from training.frontend import LogMel
from training.models.base import EmotionModel, ModelError
from training.models.functionals import FunctionalsBranch
from training.prosody import N_FEATURES, Prosody


@dataclass
class RealtimeConfig:
    """Architecture and regularisation knobs (saved beside checkpoints, rebuilt by `build`)."""

    n_mels: int = 64
    n_fft: int = 400
    channels: int = 128
    prosody_channels: int = 48
    heads: int = 4
    blocks: int = 3
    dropout: float = 0.2
    freq_mask: int = 8  # SpecAugment widths (training only)
    time_mask: int = 20
    n_masks: int = 2
    functionals: int = 0  # > 0: utterance-level functionals branch of this width (`models.functionals`)
    conv2d: int = 0  # > 0: a 2-D conv front end of this many channels over the log-mel (`SpectralFront2d`)


def instance_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise each channel over time for each item: removes mic/gain/speaker offsets."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


class SepBlock(nn.Module):
    """Residual depthwise-separable conv block (optionally strided by 2)."""

    def __init__(self, channels: int, kernel: int = 5, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.stride = stride
        self.dw = nn.Conv1d(channels, channels, kernel, stride=stride, padding=kernel // 2, groups=channels)
        self.pw = nn.Conv1d(channels, channels, 1)
        self.bn1 = nn.BatchNorm1d(channels)
        self.bn2 = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = F.gelu(self.bn1(self.dw(x)))
        y = self.drop(self.bn2(self.pw(y)))
        skip = x[:, :, ::2] if self.stride == 2 else x  # same length as the strided conv: ceil(T / 2)
        return F.gelu(y + skip)


class Stem(nn.Module):
    """Conv stem: input channels -> `channels` at `stride` x the frame period, then blocks halve the rate."""

    def __init__(
        self, c_in: int, channels: int, blocks: int, dropout: float, stride: int = 2, kernel: int = 5
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, channels, kernel, stride=stride, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(channels)
        self.blocks = nn.Sequential(
            *[SepBlock(channels, stride=2 if i == 0 else 1, dropout=dropout) for i in range(blocks)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(F.gelu(self.bn(self.conv(x))))


class SpectralFront2d(nn.Module):
    """Two 3x3 conv layers over (mel band, frame), each halving the bands; the first also halves the frames.

    Why: a 1-D stack sees each mel band as its own channel, so a pattern learnt at one speaker's pitch and
    formants must be learnt again at another's. Kernels shared across frequency generalise over that shift,
    which is most of what separates unseen speakers. Output [B, channels * n_mels / 4, ceil(T / 2)].
    """

    def __init__(self, n_mels: int, channels: int) -> None:
        super().__init__()
        if n_mels % 4:
            raise ModelError(f"realtime: conv2d needs n_mels divisible by 4, got {n_mels}")
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (n_mels // 4)

    def forward(self, mel: Tensor) -> Tensor:
        x = F.gelu(self.bn1(self.conv1(mel.unsqueeze(1))))
        x = F.gelu(self.bn2(self.conv2(x)))
        b, c, f, t = x.shape
        return x.reshape(b, c * f, t)


class GatedCrossAttention(nn.Module):
    """Spectral tokens attend to prosody tokens; a sigmoid gate mixes the result into the spectral stream."""

    def __init__(self, d_q: int, d_kv: int, heads: int) -> None:
        super().__init__()
        if d_q % heads:
            raise ModelError(f"realtime: channels ({d_q}) must be divisible by heads ({heads})")
        self.heads, self.d_head = heads, d_q // heads
        self.q = nn.Linear(d_q, d_q)
        self.kv = nn.Linear(d_kv, 2 * d_q)
        self.out = nn.Linear(d_q, d_q)
        self.direct = nn.Linear(d_kv, d_q)  # the time-aligned prosody frame itself
        self.gate = nn.Linear(2 * d_q, d_q)
        self.norm = nn.LayerNorm(d_q)

    def forward(self, spec: Tensor, pros: Tensor) -> Tensor:
        # spec [B, T, Dq], pros [B, T, Dk] (same T by construction)
        b, t, d = spec.shape
        q = self.q(spec).reshape(b, t, self.heads, self.d_head).transpose(1, 2)
        k, v = self.kv(pros).chunk(2, dim=-1)
        k = k.reshape(b, t, self.heads, self.d_head).transpose(1, 2)
        v = v.reshape(b, t, self.heads, self.d_head).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_head), dim=-1)
        ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, t, d)
        ctx = self.out(ctx) + self.direct(pros)
        g = torch.sigmoid(self.gate(torch.cat([spec, ctx], dim=-1)))
        return self.norm(spec + g * ctx)


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time: [B, T, D] -> [B, 2D]."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d // 2), nn.Tanh(), nn.Linear(d // 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        w = torch.softmax(self.score(x), dim=1)  # [B, T, 1]
        mean = (w * x).sum(dim=1)
        var = (w * x * x).sum(dim=1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1)


class RealtimeModel(EmotionModel):
    """Log-mel + prosody, gated cross-attention fusion, attentive pooling, logits + V/A/D heads."""

    def __init__(self, labels: list[str], config: RealtimeConfig) -> None:
        super().__init__(labels, config, has_logits=True, has_vad=True)
        c = config
        self.cfg = c
        self.logmel = LogMel(c.n_mels, n_fft=c.n_fft, hop=160, win=c.n_fft)
        self.prosody = Prosody()
        self.prosody_bn = nn.BatchNorm1d(N_FEATURES)  # raw (un-normalised) prosody levels, e.g. pitch
        # absent (not just unused) when off, so checkpoints without it still load strictly
        self.front2d = SpectralFront2d(c.n_mels, c.conv2d) if c.conv2d > 0 else None
        if self.front2d is None:
            self.spec_stem = Stem(c.n_mels, c.channels, c.blocks, c.dropout * 0.5)
        else:  # the front already halved the frame rate; a pointwise projection, its kernels gave context
            self.spec_stem = Stem(self.front2d.out_channels, c.channels, c.blocks, c.dropout * 0.5, 1, 1)
        self.pros_stem = Stem(2 * N_FEATURES, c.prosody_channels, 2, c.dropout * 0.5)
        self.fusion = GatedCrossAttention(c.channels, c.prosody_channels, c.heads)
        self.post = SepBlock(c.channels, dropout=c.dropout * 0.5)
        self.pool = AttentiveStatsPool(c.channels)
        self.func = FunctionalsBranch(c.n_mels, c.functionals, c.dropout) if c.functionals > 0 else None
        d_in = 2 * c.channels + max(c.functionals, 0)
        self.trunk = nn.Sequential(nn.Linear(d_in, c.channels), nn.GELU(), nn.Dropout(c.dropout))
        self.logit_head = nn.Linear(c.channels, len(labels))
        self.vad_head = nn.Linear(c.channels, 3)

    def _spec_augment(self, mel: Tensor) -> Tensor:
        """Random frequency and time masks on the normalised log-mel (training only, never exported)."""
        c = self.cfg
        b, f, t = mel.shape
        out = mel.clone()
        for _ in range(c.n_masks):
            fw = torch.randint(0, c.freq_mask + 1, (b,))
            f0 = (torch.rand(b) * (f - fw).clamp(min=1)).long()
            tw = torch.randint(0, c.time_mask + 1, (b,))
            t0 = (torch.rand(b) * (t - tw).clamp(min=1)).long()
            fi = torch.arange(f)[None, :]
            ti = torch.arange(t)[None, :]
            fmask = (fi >= f0[:, None]) & (fi < (f0 + fw)[:, None])
            tmask = (ti >= t0[:, None]) & (ti < (t0 + tw)[:, None])
            out = out.masked_fill(fmask[:, :, None].to(mel.device), 0.0)
            out = out.masked_fill(tmask[:, None, :].to(mel.device), 0.0)
        return out

    def features(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """(raw log-mel, raw prosody): parameter-free, so models with the same front end can share them."""
        return self.logmel(audio), self.prosody(audio)

    def frontend_key(self) -> tuple[int, int]:
        """Models with equal keys compute identical `features`."""
        return (self.cfg.n_mels, self.cfg.n_fft)

    def embed(self, audio: Tensor) -> Tensor:
        """Utterance embedding [B, channels] before the heads."""
        return self.embed_features(*self.features(audio))

    def embed_features(self, raw_mel: Tensor, pros_raw: Tensor) -> Tensor:
        """The embedding from precomputed `features`."""
        mel = instance_norm(raw_mel)
        if self.training and self.cfg.n_masks > 0:
            mel = self._spec_augment(mel)
        pros = torch.cat([instance_norm(pros_raw), self.prosody_bn(pros_raw)], dim=1)
        if self.front2d is not None:
            mel = self.front2d(mel)
        s = self.spec_stem(mel).transpose(1, 2)  # [B, T', C]
        p = self.pros_stem(pros).transpose(1, 2)  # [B, T', Cp]
        fused = self.fusion(s, p).transpose(1, 2)
        fused = self.post(fused).transpose(1, 2)
        pooled = self.pool(fused)
        if self.func is not None:
            pooled = torch.cat([pooled, self.func(pros_raw, raw_mel)], dim=-1)
        return self.trunk(pooled)

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.embed(audio))

    def heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, V/A/D in [-1, 1]) from an embedding."""
        return self.logit_head(h), torch.tanh(self.vad_head(h))


def build(config: dict[str, Any], labels: list[str]) -> RealtimeModel:
    """Registry factory: unknown config keys are a one-line user error."""
    known = {f.name for f in fields(RealtimeConfig)}
    bad = sorted(set(config) - known)
    if bad:
        raise ModelError(
            f"realtime: unknown config key(s) {', '.join(bad)} (known: {', '.join(sorted(known))})"
        )
    if not labels:
        raise ModelError("realtime: needs at least one label")
    return RealtimeModel(list(labels), RealtimeConfig(**config))
