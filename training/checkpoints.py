"""Checkpoints: safetensors weights (and optimiser moments) + a JSON sidecar naming the model.

Nothing is ever unpickled: a checkpoint `<dir>/best` is `best.safetensors` + `best.json`, and the JSON
holds the registry name, config and labels needed to rebuild the model (`load_checkpoint_model`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from training.models.base import EmotionModel

log = logging.getLogger(__name__)


class CheckpointError(Exception):
    """A missing, incomplete or mismatched checkpoint (one-line message naming the file)."""


def trained_parameters(model: nn.Module, extra: nn.Module | None = None) -> dict[str, nn.Parameter]:
    """Every parameter the optimiser updates, by a stable name: the model's own names, and those of a
    training-only module (the speaker adversary) under `adversary.`."""
    params = dict(model.named_parameters())
    if extra is not None:
        params.update({f"adversary.{n}": p for n, p in extra.named_parameters()})
    return params


def optimizer_tensors(
    opt: torch.optim.Optimizer, model: nn.Module, extra: nn.Module | None = None
) -> dict[str, Tensor]:
    names = {id(p): n for n, p in trained_parameters(model, extra).items()}
    out: dict[str, Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, val in opt.state.get(p, {}).items():
                if isinstance(val, Tensor):
                    out[f"{names[id(p)]}::{key}"] = val.detach().clone().contiguous()
    return out


def load_optimizer_tensors(
    opt: torch.optim.Optimizer, model: nn.Module, tensors: dict[str, Tensor], extra: nn.Module | None = None
) -> None:
    params = trained_parameters(model, extra)
    for key, val in tensors.items():
        name, _, slot = key.rpartition("::")
        p = params.get(name)
        if p is None:
            raise CheckpointError(f"optimiser state names unknown parameter {name}")
        opt.state[p][slot] = val.clone()


def save_checkpoint(path: Path, model: EmotionModel, state: dict[str, Any]) -> Path:
    """`path`.safetensors (weights) + `path`.json (model name/config/labels and `state`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(weights, str(path.with_suffix(".safetensors")))
    meta = {"model": {"config": model.config_dict(), "labels": model.labels}, **state}
    meta["model"]["name"] = state.get("model_name", "")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(path.with_suffix(".json"))
    return path.with_suffix(".safetensors")


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The JSON half of a checkpoint given either half's path."""
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint metadata not found: {meta_path}")
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {meta_path} is not valid JSON: {e}") from None
    return meta


def load_weights(model: EmotionModel, path: Path, *, strict: bool = True) -> list[str]:
    """Load safetensors weights into `model` (names and shapes must match when strict).

    Non-strict (transfer initialisation, e.g. a checkpoint with another label set): tensors whose name or
    shape does not fit are skipped and logged; returns the skipped checkpoint keys.
    """
    st = Path(path).with_suffix(".safetensors")
    if not st.is_file():
        raise CheckpointError(f"checkpoint weights not found: {st}")
    try:
        weights = load_file(str(st))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"checkpoint {st} is unreadable: {' '.join(str(e).split())}") from None
    skipped: list[str] = []
    if not strict:
        own = model.state_dict()
        skipped = sorted(k for k, v in weights.items() if k not in own or own[k].shape != v.shape)
        weights = {k: v for k, v in weights.items() if k not in skipped}
        if skipped:
            log.warning(
                "init from %s: skipped %d non-matching tensor(s): %s", st, len(skipped), ", ".join(skipped)
            )
    try:
        model.load_state_dict(weights, strict=strict)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "mismatch"
        raise CheckpointError(f"checkpoint {st} does not fit this model: {first}") from None
    return skipped


def resolve_checkpoint(path: Path | str) -> Path:
    """A checkpoint stem from a run directory (its `best`), a `.safetensors`/`.json` file or a stem."""
    p = Path(path)
    if p.is_dir():
        p = p / "best"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    if not p.with_suffix(".json").is_file() or not p.with_suffix(".safetensors").is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected <name>.safetensors and <name>.json)")
    return p


def load_checkpoint_model(path: Path | str) -> EmotionModel:
    """Rebuild a model from a checkpoint via the registry (its name, config and labels are in the JSON)."""
    from training.models import build_model

    path = resolve_checkpoint(path)
    meta = read_checkpoint_meta(path)
    info = meta.get("model", {})
    if not info.get("name"):
        raise CheckpointError(f"checkpoint {Path(path).with_suffix('.json')} does not name its model")
    model = build_model(info["name"], info.get("config", {}), info.get("labels", []))
    load_weights(model, path)
    return model.eval()
