"""Layers shared by the paper seed models, written so that they export to ONNX with dynamic lengths.

`BiLSTM` is the reason this module exists: exporting `nn.LSTM` with dynamo makes torch unroll the
recurrence step by step while tracing with symbolic lengths, which takes minutes for a one-second example.
During `torch.onnx.export` it emits one ONNX `LSTM` node instead (via `torch.onnx.ops.symbolic`), from the
same weights, so export is fast and the graph accepts any length; in eager mode it is plain `nn.LSTM`.
Attention uses `scaled_dot_product_attention` rather than `nn.MultiheadAttention`, whose inference fast
path is a fused kernel the exporter does not need to know about.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# nn.LSTM packs gates as (input, forget, cell, output); ONNX LSTM expects (input, output, forget, cell)
_ONNX_GATE_ORDER = (0, 3, 1, 2)


def instance_norm(x: Tensor, dim: int = -1, eps: float = 1e-5) -> Tensor:
    """Normalise each feature over time for each item: removes mic/gain/speaker offsets."""
    mean = x.mean(dim=dim, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dim, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


class BiLSTM(nn.Module):
    """One bidirectional LSTM layer [B, T, I] -> [B, T, 2H]; one ONNX `LSTM` node when exported."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True)

    def _onnx_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        h = self.hidden_size

        def reorder(w: Tensor) -> Tensor:
            return torch.cat([w[g * h : (g + 1) * h] for g in _ONNX_GATE_ORDER], dim=0)

        p = dict(self.lstm.named_parameters())
        w = torch.stack([reorder(p["weight_ih_l0"]), reorder(p["weight_ih_l0_reverse"])])
        r = torch.stack([reorder(p["weight_hh_l0"]), reorder(p["weight_hh_l0_reverse"])])
        b = torch.stack(
            [
                torch.cat([reorder(p["bias_ih_l0"]), reorder(p["bias_hh_l0"])]),
                torch.cat([reorder(p["bias_ih_l0_reverse"]), reorder(p["bias_hh_l0_reverse"])]),
            ]
        )
        return w, r, b

    def forward(self, x: Tensor) -> Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.lstm(x)[0]
        w, r, b = self._onnx_weights()
        seq = x.transpose(0, 1)  # ONNX layout 0: [T, B, I]
        t, batch = seq.shape[0], seq.shape[1]
        y = torch.onnx.ops.symbolic(
            "LSTM",
            (seq, w, r, b),
            {"hidden_size": self.hidden_size, "direction": "bidirectional"},
            dtype=x.dtype,
            shape=(t, 2, batch, self.hidden_size),
            version=14,
        )  # Y: [T, num_directions, B, H]
        return y.permute(2, 0, 1, 3).reshape(batch, t, 2 * self.hidden_size)


class Attention(nn.Module):
    """Multi-head attention; queries [B, Tq, D] attend to keys/values [B, Tk, Dkv] (self when kv is None)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, kv: Tensor | None = None, kv_mask: Tensor | None = None) -> Tensor:
        """`kv_mask` [B, Tk] bool, True = attend (each row needs at least one True)."""
        b, tq, d = x.shape
        src = x if kv is None else kv
        tk = src.shape[1]
        q = self.q(x).reshape(b, tq, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(src).reshape(b, tk, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        p = self.dropout if self.training else 0.0
        mask = None if kv_mask is None else kv_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, tq, d))


class FeedForward(nn.Module):
    """Position-wise GELU feed-forward."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Post-norm attention block: self-attention (kv None) or cross-attention, then a GELU feed-forward."""

    def __init__(
        self, dim: int, heads: int, ff: int, *, kv_dim: int | None = None, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, kv_dim=kv_dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, kv: Tensor | None = None) -> Tensor:
        x = self.norm1(x + self.drop(self.attn(x, kv)))
        return self.norm2(x + self.ff(x))


class GatedCrossAttention(nn.Module):
    """x + tanh(a) * CrossAttn(x, aux), then + tanh(b) * FFN: gates start at 0, so an inserted block
    leaves a pretrained encoder's function unchanged until training opens them (Flamingo-style)."""

    def __init__(self, dim: int, heads: int, aux_dim: int, ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, kv_dim=aux_dim, dropout=dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff, dropout)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, aux: Tensor, aux_mask: Tensor | None = None) -> Tensor:
        x = x + torch.tanh(self.attn_gate) * self.attn(self.norm(x), aux, aux_mask)
        return x + torch.tanh(self.ff_gate) * self.ff(self.ff_norm(x))


def mean_pool(x: Tensor) -> Tensor:
    """[B, T, D] -> [B, D] global average over time."""
    return x.mean(dim=1)


def mean_var_pool(x: Tensor, eps: float = 1e-5) -> Tensor:
    """[B, T, D] -> [B, 2D]: mean and standard deviation over time (statistics pooling)."""
    mean = x.mean(dim=1)
    var = ((x - mean.unsqueeze(1)) ** 2).mean(dim=1)
    return torch.cat([mean, torch.sqrt(var + eps)], dim=1)


class Autoencoder(nn.Module):
    """Bottleneck autoencoder: `encode` reduces a modality embedding, `decode` reconstructs it."""

    def __init__(self, dim: int, bottleneck: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, bottleneck), nn.GELU(), nn.Dropout(dropout))
        self.decoder = nn.Sequential(nn.Linear(bottleneck, dim), nn.GELU(), nn.Linear(dim, dim))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(x)
        return z, self.decode(z)
