"""Model registry: `build_model(name, config, labels)` so the CLI and configs name models by string."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from training.models.base import EmotionModel, ModelError

# name -> (module, factory function); modules are imported lazily so one missing model does not break others
_REGISTRY: dict[str, tuple[str, str]] = {
    "realtime": ("training.models.realtime", "build"),
    "ca-ser": ("training.models.ca_ser", "build"),
    "hump-cat": ("training.models.hump_cat", "build"),
    "vad-fusion": ("training.models.vad_fusion", "build"),
    "wavfusion": ("training.models.wavfusion", "build"),
    # not trainable: rebuilt from its members' names and configs (engines' PyTorch copies of ensembles)
    "mean-ensemble": ("training.models.ensemble", "build"),
}

# the models `train --model` can train (an ensemble is built from trained members, never trained itself)
MODEL_NAMES: tuple[str, ...] = tuple(n for n in _REGISTRY if n != "mean-ensemble")


def build_model(name: str, config: dict[str, Any] | None, labels: Sequence[str]) -> EmotionModel:
    """Build a registered model; each module exposes `build(config: dict, labels: list[str])`."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    module_name, attr = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise ModelError(f"model {name!r} is not available in this installation ({module_name})") from e
        raise
    factory = getattr(module, attr)
    model = factory(dict(config or {}), list(labels))
    if not isinstance(model, EmotionModel):
        raise ModelError(f"model {name!r}: factory did not return an EmotionModel")
    return model


def registered_name(model: object) -> str:
    """The `build_model` name of `model`'s class, found by its module (one registered model per module)."""
    module = type(model).__module__
    for name, (mod, _) in _REGISTRY.items():
        if mod == module:
            return name
    raise ModelError(f"{type(model).__name__}: not a registered model (training.models)")


__all__ = ["MODEL_NAMES", "EmotionModel", "ModelError", "build_model", "registered_name"]
