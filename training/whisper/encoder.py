"""Whisper's log-mel front end and encoder blocks as plain PyTorch modules that export to ONNX.

The front end reproduces Whisper's input (80 Slaney mel bands over a 25 ms / 10 ms periodic-Hann STFT,
log10, floored at the window's maximum minus 8, then (x + 4) / 4) with the conv1d DFT basis that every
engine here uses instead of ``torch.stft``. The encoder is the first ``n_layers`` pre-LN transformer
blocks of Whisper-base; its positional table is cut to the window's length, so any length up to 30 s works.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.frontend import STFTPower

N_MELS = 80
WIDTH = 512
HEADS = 8
MAX_POSITIONS = 1500
LOG10_FLOOR = 1e-7  # Whisper uses 1e-10; graph epsilons must stay >= 1e-7 (ONNX optimiser)


def _slaney_hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    lin = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, lin)


def _slaney_mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    lin = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, lin)


def slaney_mel_filters(n_mels: int = N_MELS, n_fft: int = 400, sample_rate: int = 16_000) -> np.ndarray:
    """Slaney-scale, Slaney-normalised mel filters [n_mels, n_fft // 2 + 1] (librosa's, as in Whisper)."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _slaney_mel_to_hz(
        np.linspace(
            _slaney_hz_to_mel(np.array(0.0)), _slaney_hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2
        )
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


class WhisperLogMel(nn.Module):
    """Raw 16 kHz PCM [B, N] -> Whisper-normalised log-mel [B, 80, N // 160]."""

    filters: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.stft = STFTPower(n_fft=400, hop=160, win=400)
        self.register_buffer("filters", torch.from_numpy(slaney_mel_filters()), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        power = self.stft(audio)[:, :, :-1]  # Whisper drops the last frame
        mel = torch.matmul(self.filters, power)
        logmel = torch.log10(torch.clamp(mel, min=LOG10_FLOOR))
        peak = logmel.amax(dim=(1, 2), keepdim=True)
        logmel = torch.maximum(logmel, peak - 8.0)
        return (logmel + 4.0) / 4.0


class Block(nn.Module):
    """One pre-LN Whisper encoder block: self-attention then a GELU MLP, each with a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.attn_ln = nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.mlp_ln = nn.LayerNorm(WIDTH)
        self.fc1 = nn.Linear(WIDTH, 4 * WIDTH)
        self.fc2 = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, WIDTH // HEADS).transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, WIDTH))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Log-mel [B, 80, T] -> the residual stream after ``n_layers`` blocks [B, ceil(T / 2), 512]."""

    positions: Tensor

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        if not 1 <= n_layers <= 6:
            raise ValueError(f"Whisper-base has 6 encoder layers; n_layers={n_layers}")
        self.n_layers = n_layers
        self.conv1 = nn.Conv1d(N_MELS, WIDTH, 3, padding=1)
        self.conv2 = nn.Conv1d(WIDTH, WIDTH, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
        self.register_buffer("positions", torch.zeros(MAX_POSITIONS, WIDTH))

    def forward(self, mel: Tensor, all_layers: bool = False) -> list[Tensor]:
        """The states after each block (``all_layers``) or only after the last one, as a one-item list."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        states = []
        for block in self.blocks:
            x = block(x)
            if all_layers:
                states.append(x)
        return states if all_layers else [x]

    def load_ctranslate2(self, weights: dict[str, npt.NDArray[np.float32]]) -> None:
        """Copy tensors named as in a CTranslate2 Whisper spec (see ``weights.read_encoder``)."""

        def put(param: Tensor | None, name: str) -> None:
            if param is None:
                raise ValueError(f"Whisper tensor {name} has no parameter to go to")
            value = torch.from_numpy(np.ascontiguousarray(weights[name]))
            if value.shape != param.shape:
                raise ValueError(
                    f"Whisper tensor {name} is {tuple(value.shape)}, expected {tuple(param.shape)}"
                )
            with torch.no_grad():
                param.copy_(value)

        put(self.conv1.weight, "conv1/weight")
        put(self.conv1.bias, "conv1/bias")
        put(self.conv2.weight, "conv2/weight")
        put(self.conv2.bias, "conv2/bias")
        put(self.positions, "position_encodings/encodings")
        for i, block in enumerate(self.blocks):
            block = cast(Block, block)
            p = f"layer_{i}/"
            put(block.attn_ln.weight, p + "self_attention/layer_norm/gamma")
            put(block.attn_ln.bias, p + "self_attention/layer_norm/beta")
            put(block.qkv.weight, p + "self_attention/linear_0/weight")
            put(block.qkv.bias, p + "self_attention/linear_0/bias")
            put(block.out.weight, p + "self_attention/linear_1/weight")
            put(block.out.bias, p + "self_attention/linear_1/bias")
            put(block.mlp_ln.weight, p + "ffn/layer_norm/gamma")
            put(block.mlp_ln.bias, p + "ffn/layer_norm/beta")
            put(block.fc1.weight, p + "ffn/linear_0/weight")
            put(block.fc1.bias, p + "ffn/linear_0/bias")
            put(block.fc2.weight, p + "ffn/linear_1/weight")
            put(block.fc2.bias, p + "ffn/linear_1/bias")


def pretrained_encoder(n_layers: int) -> WhisperEncoder:
    """The first ``n_layers`` blocks of Whisper-base with the pinned, verified weights, in eval mode."""
    from training.whisper.weights import load_encoder_weights

    enc = WhisperEncoder(n_layers)
    enc.load_ctranslate2(load_encoder_weights())
    return enc.eval()


def mean_std_pool(states: Tensor) -> Tensor:
    """[B, T, D] -> [B, 2D]: the mean and standard deviation over time of each channel."""
    mean = states.mean(dim=1)
    std = torch.sqrt(torch.clamp((states - mean.unsqueeze(1)).pow(2).mean(dim=1), min=1e-7))
    return torch.cat([mean, std], dim=-1)
