"""The PyTorch copy of an engine's model (``<engine>/torch/``), so a benchmark can run it the research way.

An engine ships ONNX only; the optional ``torch/config.json`` (registry model name, its config, labels)
plus ``torch/model.safetensors`` (the state dict) rebuild the very same model with
``training.models.build_model``. ``emotrack bench --backend torch`` uses it to compare our batched ONNX
path with eager PyTorch, one window per call. Nothing in the daemon reads this directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from engines.errors import EngineError

TORCH_DIR = "torch"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def registry_name(model: nn.Module) -> str:
    """The ``build_model`` name of ``model``'s class (the registry maps names to modules)."""
    from training.models import ModelError, registered_name

    try:
        return registered_name(model)
    except ModelError as exc:
        raise EngineError(f"{exc}, cannot save a copy") from None


def save_torch_copy(
    model: nn.Module, engine_dir: Path, *, name: str | None = None, config: dict[str, Any] | None = None
) -> Path:
    """Write ``engine_dir/torch/{config.json, model.safetensors}``; returns that directory.

    ``name``/``config`` default to the model's registry name and ``model.config_dict()``; ``labels``
    come from ``model.labels``.
    """
    from safetensors.torch import save_file

    out = Path(engine_dir) / TORCH_DIR
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else getattr(model, "config_dict", dict)()
    meta = {
        "format": FORMAT_VERSION,
        "model": name or registry_name(model),
        "config": cfg,
        "labels": list(getattr(model, "labels", [])),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME))
    (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def has_torch_copy(engine_dir: Path) -> bool:
    d = Path(engine_dir) / TORCH_DIR
    return (d / CONFIG_NAME).is_file() and (d / WEIGHTS_NAME).is_file()


def read_torch_config(engine_dir: Path) -> dict[str, Any]:
    """The parsed ``torch/config.json``; EngineError naming the file when missing or malformed."""
    path = Path(engine_dir) / TORCH_DIR / CONFIG_NAME
    if not path.is_file():
        raise EngineError(
            f"{path}: not found (this engine has no PyTorch copy; export it with training.torch_copy)"
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise EngineError(f"{path}: expected an object with a string 'model'")
    if meta.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise EngineError(f"{path}: unsupported format {meta.get('format')!r} (expected {FORMAT_VERSION})")
    if not isinstance(meta.get("config", {}), dict) or not isinstance(meta.get("labels", []), list):
        raise EngineError(f"{path}: 'config' must be an object and 'labels' a list")
    return meta


def load_torch_copy(engine_dir: Path) -> nn.Module:
    """Rebuild the engine's model in eval mode from its PyTorch copy; EngineError on any problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from training.models import ModelError, build_model

    meta = read_torch_config(engine_dir)
    weights = Path(engine_dir) / TORCH_DIR / WEIGHTS_NAME
    try:
        model = build_model(meta["model"], meta.get("config") or {}, [str(x) for x in meta.get("labels", [])])
    except ModelError as exc:
        raise EngineError(f"{weights.parent / CONFIG_NAME}: {exc}") from None
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise EngineError(f"{weights}: cannot read weights ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EngineError(f"{weights}: weights do not fit model {meta['model']!r} ({first[:200]})") from None
    return model.eval()


__all__ = ["has_torch_copy", "load_torch_copy", "read_torch_config", "save_torch_copy"]
