"""Export a torch model to an engine directory (model.onnx + engine.json) and prove parity with ORT.

The graph must take raw PCM ``audio`` [batch, samples] with both axes dynamic. The dynamo exporter
is given a batch-2 example so a batch of 1 cannot be silently specialised into the graph, and the
result is checked at several batch sizes and lengths before anyone relies on it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from engines.errors import EngineError
from engines.integrity import sha256_file
from engines.manifest import MODEL_NAME, EngineManifest, write_manifest

log = logging.getLogger(__name__)

INPUT_NAME = "audio"
_HEADS = ("logits", "vad")  # positional order of a model's (logits, vad) tuple
_MAX_BATCH = 4096


class _OutputAdapter(nn.Module):
    """Normalises a model's return to a tuple in the manifest's output order.

    Accepted: a dict keyed by output name, a single tensor, a tuple with one entry per manifest head,
    or a full (logits, vad) pair from which the manifest's heads are picked.
    """

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(audio)
        if isinstance(out, dict):
            return tuple(out[n] for n in self.names)
        if isinstance(out, torch.Tensor):
            out = (out,)
        if len(out) == len(self.names):
            return tuple(out)
        if len(out) == 2:  # a full (logits, vad) pair: keep the heads the manifest lists
            return tuple(out[_HEADS.index(n)] for n in self.names)
        raise ValueError(f"model returned {len(out)} outputs, manifest lists {list(self.names)}")


def speech_like(n_samples: int, seed: int = 0, sample_rate: int = 16_000) -> np.ndarray:
    """Deterministic speech-like test signal: gliding harmonic voice, syllable envelope, breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi)) + rng.uniform(-20, 20)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(h * phase) / h for h in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)), 0.0, None) ** 0.5
    x = 0.25 * voice * envelope + 0.01 * rng.standard_normal(n_samples)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _inline_external_data(path: Path) -> None:
    """Rewrite ``path`` as one self-contained file if the exporter split weights out."""
    proto = onnx.load(str(path), load_external_data=False)
    data_files = {
        e.value
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
    if not data_files:
        return
    proto = onnx.load(str(path), load_external_data=True)  # pulls the data in, marks tensors internal
    onnx.save_model(proto, str(path), save_as_external_data=False)
    for name in data_files:
        (path.parent / name).unlink(missing_ok=True)


def _check_graph_interface(path: Path, names: tuple[str, ...]) -> None:
    """The exported graph must take one rank-2 float ``audio`` with symbolic dims and emit ``names``."""
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise EngineError(f"{path}: expected one input named {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 2:
        raise EngineError(f"{path}: input {INPUT_NAME!r} must have rank 2 [batch, samples], got {len(dims)}")
    baked = [i for i, d in enumerate(dims) if d.HasField("dim_value")]
    if baked:
        raise EngineError(f"{path}: input axes {baked} were exported with fixed sizes, must be dynamic")
    got = tuple(o.name for o in proto.graph.output)
    if got != names:
        raise EngineError(f"{path}: outputs are {list(got)}, manifest expects {list(names)}")


def export_engine(model: nn.Module, out_dir: Path, manifest: EngineManifest, *, opset: int = 18) -> Path:
    """Export ``model`` to ``out_dir/model.onnx`` (one file) and write engine.json with its sha256.

    ``model(audio [B, N]) ->`` a dict keyed by output name, a tensor, or a tuple in the order (logits, vad).
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = manifest.outputs.names
    adapter = _OutputAdapter(model, names).eval()
    example = torch.from_numpy(np.stack([speech_like(manifest.window_samples, seed=s) for s in (1, 2)]))
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    samples = torch.export.Dim("samples", min=2, max=manifest.sample_rate * 3600)
    onnx_path = out_dir / MODEL_NAME
    try:
        with torch.no_grad():
            torch.onnx.export(
                adapter,
                (example,),
                str(onnx_path),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_shapes=({0: batch, 1: samples},),
                external_data=False,
            )
    except Exception as e:  # torch raises many types; the cause chain keeps the full report
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise EngineError(f"{onnx_path}: torch.onnx.export failed ({first[:300]})") from e
    _inline_external_data(onnx_path)
    _check_graph_interface(onnx_path, names)
    prov = manifest.provenance
    if not prov.created:
        prov = replace(prov, created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat())
    final = replace(manifest, provenance=prov, sha256={**manifest.sha256, MODEL_NAME: sha256_file(onnx_path)})
    write_manifest(out_dir, final)
    log.info("exported %s (%d bytes, outputs %s)", onnx_path, onnx_path.stat().st_size, list(names))
    return out_dir


@dataclass(frozen=True)
class ParityReport:
    """PyTorch vs ONNX Runtime agreement, per output, over every (batch, length) case tried.

    An element passes when |torch - ORT| <= tolerance * (1 + |torch|): absolute near zero, relative for large
    values. Float32 error grows with magnitude, and log-probabilities of unlikely classes (-5 and below) or
    features of digital silence (normalised by a near-zero variance) carry proportionally more of it.
    """

    max_abs_diff: dict[str, float]
    tolerance: float
    cases: list[tuple[int, int]] = field(default_factory=list)
    per_case: list[dict[str, Any]] = field(default_factory=list)
    max_scaled_diff: dict[str, float] = field(default_factory=dict)  # max |torch - ORT| / (1 + |torch|)

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)

    def __float__(self) -> float:
        return self.worst

    @property
    def passed(self) -> bool:
        scaled = max(self.max_scaled_diff.values(), default=self.worst)
        return math.isfinite(self.worst) and scaled <= self.tolerance

    def __str__(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_diff.items())
        verdict = "PASS" if self.passed else "FAIL"
        n = len(self.cases)
        return (
            f"parity {verdict}: max |torch - ORT| {diffs} "
            f"(tolerance {self.tolerance:g} x (1 + |torch|), {n} cases)"
        )


def _batch_from(audio: Sequence[np.ndarray] | None, batch: int, length: int, seed: int) -> np.ndarray:
    """[batch, length] from real clips (cycled, cropped/tiled to length) or the synthetic signal."""
    rows = []
    for i in range(batch):
        if audio:
            clip = np.asarray(audio[(seed + i) % len(audio)], dtype=np.float32).reshape(-1)
            reps = -(-length // max(len(clip), 1))
            rows.append(np.tile(clip, reps)[:length])
        else:
            rows.append(speech_like(length, seed=seed * 131 + i))
    return np.stack(rows).astype(np.float32)


def check_parity(
    model: nn.Module,
    engine_dir: Path,
    lengths: Sequence[int] = (8000, 16000, 40000),
    batch_sizes: Sequence[int] = (1, 3),
    tolerance: float = 1e-3,
    *,
    audio: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """Run the torch model and the exported engine (ORT CPU) on the same inputs and compare outputs.

    Covers every batch size x length, which also proves the graph did not bake in the export shapes.
    """
    from engines.loader import load_engine

    engine = load_engine(engine_dir, backend="onnxruntime-cpu")
    names = engine.manifest.outputs.names
    adapter = _OutputAdapter(model, names).eval()
    worst = dict.fromkeys(names, 0.0)
    scaled = dict.fromkeys(names, 0.0)
    cases: list[tuple[int, int]] = []
    per_case: list[dict[str, Any]] = []
    for bi, b in enumerate(batch_sizes):
        for li, n in enumerate(lengths):
            x = _batch_from(audio, b, n, seed=bi * 17 + li)
            with torch.no_grad():
                ref = adapter(torch.from_numpy(x))
            res = engine.infer(x)
            got = {"logits": res.logits, "vad": res.vad}
            row: dict[str, Any] = {"batch": b, "samples": n}
            for name, ref_t in zip(names, ref, strict=True):
                out = got[name]
                assert out is not None  # the loader guarantees manifest outputs exist
                if out.shape != tuple(ref_t.shape):
                    raise EngineError(
                        f"{Path(engine_dir) / MODEL_NAME}: output {name} has shape {out.shape}, "
                        f"torch gives {tuple(ref_t.shape)} for input [{b}, {n}]"
                    )
                ref_np = ref_t.numpy().astype(np.float64)
                err = np.abs(out.astype(np.float64) - ref_np)
                diff = float(np.max(err))
                rel = float(np.max(err / (1.0 + np.abs(ref_np))))
                if not (math.isfinite(diff) and math.isfinite(rel)):
                    diff = rel = math.inf
                row[name] = diff
                worst[name] = max(worst[name], diff)
                scaled[name] = max(scaled[name], rel)
            cases.append((b, n))
            per_case.append(row)
    return ParityReport(
        max_abs_diff=worst, tolerance=tolerance, cases=cases, per_case=per_case, max_scaled_diff=scaled
    )
