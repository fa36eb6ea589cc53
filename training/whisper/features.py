"""The feature graph the heads are fitted on: raw PCM in, every block's pooled states out, fp16-stored.

It is the shipped engine's graph without the heads (same front end, same blocks, same weight storage), so
embeddings computed with it are what the engine computes before its linear layers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from training.whisper.compact import compact_weights
from training.whisper.encoder import WhisperLogMel, mean_std_pool, pretrained_encoder


class PooledStates(nn.Module):
    """audio [B, N] -> [B, depth * 1024]: mean and std over time after each of the first ``depth`` blocks."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.front = WhisperLogMel()
        self.encoder = pretrained_encoder(depth)

    def forward(self, audio: Tensor) -> Tensor:
        states = self.encoder(self.front(audio), all_layers=True)
        return torch.cat([mean_std_pool(h) for h in states], dim=-1)


def export_feature_graph(depth: int, out: Path) -> Path:
    """Export ``PooledStates(depth)`` to ``out`` (dynamic batch and length, fp16-stored weights)."""
    model = PooledStates(depth).eval()
    example = torch.randn(2, 32000) * 0.1
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=2, max=16000 * 30)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        fp32 = Path(tmp) / "features.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(fp32),
            dynamo=True,
            opset_version=18,
            input_names=["audio"],
            output_names=["emb"],
            dynamic_shapes=({0: batch, 1: samples},),
            external_data=False,
        )
        compact_weights(fp32, out)
    return out
