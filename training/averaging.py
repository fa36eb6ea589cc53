"""Weight averaging over the last epochs of a run (stochastic weight averaging on a fixed schedule).

Choosing the epoch on 84 validation clips picks noise as often as skill: the chosen epoch's validation UA is
optimistic and its test UA swings by +-0.05 between seeds. Averaging the weights after each of the last N
epochs instead gives a flatter, steadier model and leaves the validation set untouched by the choice, so its
figures (and a cross-validation ensemble's pooled out-of-fold figures) stay honest. BatchNorm running
statistics are averaged with the weights; at the low learning rates of a cosine schedule's tail they barely
move between epochs, so no extra pass over the data is needed.

The running sum is saved after every averaged epoch (safetensors, no pickle), so `--resume` continues it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

COUNT_KEY = "__averaged_epochs__"


class WeightAverage:
    """Running mean of a model's floating-point state (parameters and BatchNorm buffers)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, model: nn.Module) -> None:
        """Fold the model's current state into the mean."""
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue  # counters such as BatchNorm's num_batches_tracked: the final value is kept
            v = value.detach().to(torch.float64)
            self.sums[name] = self.sums[name] + v if name in self.sums else v.clone()
        self.count += 1

    def apply_to(self, model: nn.Module) -> None:
        """Load the mean into `model` (integer buffers keep the model's own values)."""
        if self.count == 0:
            raise ValueError("no epoch was averaged")
        state = model.state_dict()
        for name, total in self.sums.items():
            state[name] = (total / self.count).to(state[name].dtype)
        model.load_state_dict(state)

    def save(self, path: Path) -> None:
        tensors = {k: v.contiguous() for k, v in self.sums.items()}
        tensors[COUNT_KEY] = torch.tensor([self.count], dtype=torch.int64)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> WeightAverage:
        tensors = load_file(str(path))
        avg = cls()
        avg.count = int(tensors.pop(COUNT_KEY).item())
        avg.sums = tensors
        return avg
