"""A fixed ensemble of trained models exported as one engine graph.

Seed ensembles cut the variance of small-corpus training; averaging inside the graph keeps the engine
contract (one model.onnx, one forward per batch) and lets ONNX Runtime schedule the members together.
Logits are the mean of the members' log-probabilities (a normalised geometric mean of their probabilities,
so the engine's softmax gives a proper distribution); V/A/D is the mean of the members' V/A/D.
`realtime` members with one front end share its log-mel and prosody features (computed once).
Not trainable: members are trained as usual and combined for export and evaluation. The config names each
member's registry model and config, so `build_model("mean-ensemble", config, labels)` rebuilds the graph
(an engine's PyTorch copy, `training.torch_copy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training.models.base import EmotionModel, ModelError
from training.models.realtime import RealtimeModel


class MeanEnsemble(EmotionModel):
    """Members with the same labels and outputs -> averaged (log-probability logits, V/A/D)."""

    def __init__(self, members: Sequence[EmotionModel]) -> None:
        if not members:
            raise ModelError("an ensemble needs at least one member")
        first = members[0]
        for m in members[1:]:
            if list(m.labels) != list(first.labels) or (m.has_logits, m.has_vad) != (
                first.has_logits,
                first.has_vad,
            ):
                raise ModelError("ensemble members must share labels and outputs")
        from training.models import registered_name

        config = {"members": [{"model": registered_name(m), "config": m.config_dict()} for m in members]}
        super().__init__(list(first.labels), config, has_logits=first.has_logits, has_vad=first.has_vad)
        self.members = nn.ModuleList(members)

    def _shared_frontend(self) -> bool:
        """All members are `realtime` models with one front end: compute log-mel and prosody once (they
        are most of a member's CPU cost)."""
        ms = list(self.members)
        return all(isinstance(m, RealtimeModel) for m in ms) and (
            len({m.frontend_key() for m in ms if isinstance(m, RealtimeModel)}) == 1
        )

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        if self._shared_frontend():
            first = self.members[0]
            assert isinstance(first, RealtimeModel)
            feats = first.features(audio)
            outs = [m.heads(m.embed_features(*feats)) for m in self.members if isinstance(m, RealtimeModel)]
        else:
            outs = [m(audio) for m in self.members]
        logits = torch.stack([torch.log_softmax(lo, dim=-1) for lo, _ in outs]).mean(dim=0)
        vad = torch.stack([v for _, v in outs]).mean(dim=0)
        return logits, vad


def build(config: dict[str, Any], labels: list[str]) -> MeanEnsemble:
    """Registry factory: an (untrained) ensemble from `{"members": [{"model": NAME, "config": {...}}]}`."""
    from training.models import build_model

    specs = config.get("members")
    if not isinstance(specs, list) or not specs:
        raise ModelError("mean-ensemble config needs a non-empty 'members' list")
    members = []
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
            raise ModelError("each mean-ensemble member needs a 'model' name and a 'config'")
        members.append(build_model(spec["model"], spec.get("config") or {}, labels))
    return MeanEnsemble(members)


def load_ensemble(checkpoints: Sequence[Path | str]) -> MeanEnsemble:
    """An eval-mode ensemble of checkpoints (run directories use their `best`)."""
    from training.checkpoints import load_checkpoint_model

    return MeanEnsemble([load_checkpoint_model(c) for c in checkpoints]).eval()
