"""The 2.0 engine graph: Whisper front end, the first L encoder blocks, mean+std pooling, linear heads.

Standardisation is folded into the heads, so the exported graph is raw PCM in, ``logits`` and ``vad`` out,
like every engine here. V/A/D comes from a ridge fit clipped to [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.whisper.encoder import WhisperEncoder, WhisperLogMel, mean_std_pool
from training.whisper.heads import LinearHead


class WhisperEmotion(nn.Module):
    """audio [B, N] -> (logits [B, K], vad [B, 3])."""

    def __init__(self, encoder: WhisperEncoder, head: LinearHead) -> None:
        super().__init__()
        self.front = WhisperLogMel()
        self.encoder = encoder
        k, d = head.weight.shape
        self.classes = nn.Linear(d, k)
        self.vad = nn.Linear(d, 3)
        with torch.no_grad():
            for layer, w, b in (
                (self.classes, head.weight, head.bias),
                (self.vad, head.vad_weight, head.vad_bias),
            ):
                w_eff = w / head.scale  # fold (x - mean) / scale into the linear map
                layer.weight.copy_(torch.from_numpy(w_eff).float())
                layer.bias.copy_(torch.from_numpy(b - w_eff @ head.mean).float())

    def embed(self, audio: Tensor) -> Tensor:
        return mean_std_pool(self.encoder(self.front(audio))[-1])

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embed(audio)
        return self.classes(h), torch.clamp(self.vad(h), -1.0, 1.0)
