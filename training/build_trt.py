"""Compile an engine's model.onnx into TensorRT plans, one per distinct GPU model on this host.

A plan only runs on the GPU model and TensorRT version it was built with, so the file name and the
engine.json entry record both. The optimisation profile spans batch and samples; the defaults come
from the manifest's window geometry. Precision follows the graph (strongly typed network when the
TensorRT version supports it; TensorRT 11 has no FP16 builder flag).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.errors import EngineError
from engines.integrity import sha256_file, verify_file
from engines.manifest import MODEL_NAME, TensorRTPlan, read_manifest, write_manifest
from engines.trt import gpu_slug, import_cudart, import_tensorrt

log = logging.getLogger(__name__)

INPUT_NAME = "audio"
WORKSPACE_BYTES = 2 << 30


class TensorRTUnavailable(EngineError):
    """This host has no usable NVIDIA GPU or no tensorrt/cuda-python packages."""

    def __init__(self) -> None:
        super().__init__("no NVIDIA GPU/TensorRT on this host: build-trt needs one")


def _gpus(cudart: Any) -> list[tuple[int, str]]:
    """(device index, name) for each visible CUDA device; empty when the driver or devices are missing."""
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            return []
        found = []
        for i in range(int(count)):
            err, props = cudart.cudaGetDeviceProperties(i)
            if int(err) == 0:
                raw = props.name
                name = raw.decode(errors="replace").rstrip("\x00") if isinstance(raw, bytes) else str(raw)
                found.append((i, name.strip()))
        return found
    except Exception:
        return []


def _profile(
    min_batch: int, opt_batch: int, max_batch: int, min_n: int, opt_n: int, max_n: int
) -> dict[str, Any]:
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(
            f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}/{opt_batch}/{max_batch}"
        )
    if not 1 <= min_n <= opt_n <= max_n:
        raise ValueError(f"need 0 < min_s <= opt_s <= max_s, got {min_n}/{opt_n}/{max_n} samples")
    return {
        "input": INPUT_NAME,
        "min": [min_batch, min_n],
        "opt": [opt_batch, opt_n],
        "max": [max_batch, max_n],
    }


def _build_one(trt: Any, onnx_path: Path, profile: dict[str, Any], out: Path) -> None:
    """Parse the ONNX graph and serialise a plan with one optimisation profile to ``out``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT cannot parse the model ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    opt = builder.create_optimization_profile()
    opt.set_shape(INPUT_NAME, tuple(profile["min"]), tuple(profile["opt"]), tuple(profile["max"]))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT failed to build a plan for profile {profile}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".plan.tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)


def build_plans(
    engine_dir: str | Path,
    *,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 64,
    min_s: float | None = None,
    opt_s: float | None = None,
    max_s: float | None = None,
) -> list[Path]:
    """Build ``trt/<gpu-slug>-trt<version>.plan`` for each GPU model here and record them in engine.json.

    Lengths default to the manifest's min_window_s / window_s / max_window_s. Only the new plans are
    hashed; model.onnx is verified, not re-hashed. Raises TensorRTUnavailable without a GPU/TensorRT.
    """
    engine_dir = Path(engine_dir)
    manifest = read_manifest(engine_dir)
    verify_file(engine_dir, MODEL_NAME, manifest.sha256[MODEL_NAME])
    trt, cudart = import_tensorrt(), import_cudart()
    gpus = _gpus(cudart) if trt is not None and cudart is not None else []
    if trt is None or cudart is None or not gpus:
        raise TensorRTUnavailable()
    sr = manifest.sample_rate
    profile = _profile(
        min_batch,
        opt_batch,
        max_batch,
        round((min_s if min_s is not None else manifest.min_window_s) * sr),
        round((opt_s if opt_s is not None else manifest.window_s) * sr),
        round((max_s if max_s is not None else manifest.max_window_s) * sr),
    )
    version = str(trt.__version__)
    plans = list(manifest.tensorrt)
    checksums: dict[str, str] = {}
    built: list[Path] = []
    seen: set[str] = set()
    for index, gpu in gpus:
        if gpu in seen:
            continue
        seen.add(gpu)
        cudart.cudaSetDevice(index)
        rel = f"trt/{gpu_slug(gpu)}-trt{version}.plan"
        out = engine_dir / rel
        log.info("building TensorRT plan for %s (TensorRT %s), profile %s", gpu, version, profile)
        _build_one(trt, engine_dir / MODEL_NAME, profile, out)
        plans = [p for p in plans if not (p.gpu == gpu and p.tensorrt_version == version)]
        plans.append(TensorRTPlan(plan=rel, gpu=gpu, tensorrt_version=version, profile=profile))
        checksums[rel] = sha256_file(out)
        built.append(out)
    write_manifest(engine_dir, replace(manifest.with_checksums(checksums), tensorrt=tuple(plans)))
    return built
