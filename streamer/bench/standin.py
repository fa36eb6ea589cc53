"""Stand-in engines for benchmarking before (or besides) the trained default: random weights, real export.

``realtime`` is the default engine's architecture (``training/models/realtime.py``) with random weights, so
its cost per window is the shipped model's; ``heavy`` is a wav2vec2-base-sized fused model (CA-SER seed
model with a 12-layer, 768-wide encoder). Both are exported once through ``training.export`` to a cache
directory (keyed by kind and config) with their PyTorch copy beside, so ``--backend torch`` can run them.
Needs the ``train`` extra (torch); imported only by ``emotrack bench --standin/--heavy``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.errors import EngineError

LABELS = ("neutral", "happy", "sad", "angry")
KINDS = ("realtime", "heavy")

# wav2vec2-base: 512-channel conv feature encoder, 12 transformer layers, 768 hidden, 12 heads, 3072 FF.
WAV2VEC2_BASE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}


def default_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emotrack" / "bench"


def _model_spec(kind: str) -> tuple[str, dict[str, Any]]:
    if kind == "realtime":
        return "realtime", {}
    if kind == "heavy":
        # layer 12: every encoder layer runs (CA-SER reads layer 9 and drops the layers above it)
        return "ca-ser", {"backbone_config": dict(WAV2VEC2_BASE), "layer": 12}
    raise EngineError(f"stand-in engine {kind!r}: unknown (choose from {', '.join(KINDS)})")


def standin_engine(
    kind: str,
    cache_dir: Path | None = None,
    *,
    seed: int = 0,
    on_build: Callable[[Path], None] | None = None,
) -> Path:
    """The cached stand-in engine directory for ``kind``, exporting it first when absent."""
    name, config = _model_spec(kind)
    key = hashlib.sha256(json.dumps([name, config, seed, LABELS], sort_keys=True).encode()).hexdigest()[:12]
    out = (cache_dir or default_cache_dir()) / f"{kind}-{key}"
    if (out / "engine.json").is_file() and (out / "torch" / "model.safetensors").is_file():
        return out
    if on_build is not None:
        on_build(out)
    return build_standin(kind, out, seed=seed)


def build_standin(kind: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Export a random-weight ``kind`` model to ``out_dir`` (engine + torch copy); returns ``out_dir``."""
    try:
        import torch
    except ImportError:
        raise EngineError("stand-in engines need torch: pip install 'emotrack[train]'") from None
    from engines.manifest import EngineManifest, EngineOutputs, Provenance
    from training.export import export_engine
    from training.models import ModelError, build_model
    from training.torch_copy import save_torch_copy

    name, config = _model_spec(kind)
    torch.manual_seed(seed)
    try:
        model = build_model(name, config, list(LABELS)).eval()
    except ModelError as exc:
        raise EngineError(f"stand-in engine {kind!r}: {exc}") from None
    manifest = EngineManifest(
        name=f"bench-{kind}-random",
        version="0.0.0",
        labels=LABELS,
        outputs=EngineOutputs(logits=True, vad=True),
        window_s=2.0,
        hop_s=0.5,
        min_window_s=0.5,
        max_window_s=8.0,
        padding="repeat",
        provenance=Provenance(
            training_data="none (random weights: for speed measurements only)",
            code_version="streamer/bench/standin.py",
            license="Apache-2.0",
            command=f"emotrack bench --standin {kind}",
        ),
    )
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.redirect_stdout(sys.stderr):  # the exporter's progress must not mix with bench JSON
        export_engine(model, tmp, manifest)
    save_torch_copy(model, tmp, name=name, config=model.config_dict() or config)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
