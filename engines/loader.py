"""load_engine: verify manifest and checksums first, then open the best backend and check the graph."""

from __future__ import annotations

import logging
from pathlib import Path

from engines.backends import ORT_CPU, ORT_TRT, HostInfo, OrtBackend, select_backend, tensorrt_ep_problem
from engines.engine import Engine
from engines.errors import EngineError
from engines.integrity import verify_file
from engines.manifest import MODEL_NAME, EngineManifest, read_manifest
from engines.trt import TensorRTBackend, probe_trt_host

log = logging.getLogger(__name__)


BUNDLED_ENGINES = ("default", "fast")


def default_engine_path() -> Path:
    """The engine bundled as package data (engines/default)."""
    return bundled_engine_path("default")


def bundled_engine_path(name: str) -> Path:
    """A bundled engine by name: ``default`` (the most accurate) or ``fast`` (the cheapest per window)."""
    return Path(__file__).resolve().parent / name


def resolve_engine_path(path: str | Path | None) -> Path:
    """An engine directory, or a bundled engine's name where no such directory exists here."""
    if path is None:
        return default_engine_path()
    candidate = Path(path)
    if str(path) in BUNDLED_ENGINES and not candidate.exists():
        return bundled_engine_path(str(path))
    return candidate


def probe_host(want_trt: bool) -> HostInfo:
    """Snapshot of what this host can run; TensorRT is probed only when a plan could be used."""
    import onnxruntime as ort

    providers = tuple(ort.get_available_providers())
    problem = tensorrt_ep_problem() if ORT_TRT in providers else None
    if problem is not None:  # requesting it anyway prints ORT's red "EP Error" block before falling back
        log.info("ONNX Runtime's TensorRT provider left out: %s", problem)
        providers = tuple(p for p in providers if p != ORT_TRT)
    trt = probe_trt_host() if want_trt else None
    return HostInfo(
        ort_providers=providers,
        gpu_name=trt.gpu_name if trt else None,
        tensorrt_version=trt.tensorrt_version if trt else None,
        ort_trt_problem=problem,
    )


def load_engine(
    path: str | Path | None = None,
    *,
    backend: str = "auto",
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    host: HostInfo | None = None,
) -> Engine:
    """Load and verify an engine directory (None: the bundled default); every failure is an EngineError."""
    for label, n in (("intra_op_threads", intra_op_threads), ("inter_op_threads", inter_op_threads)):
        if n is not None and (not isinstance(n, int) or n < 0):
            raise ValueError(f"{label} must be a non-negative integer or None, got {n!r}")
    engine_dir = resolve_engine_path(path)
    if not engine_dir.exists():
        hint = " (no default engine is bundled yet: pass an engine directory)" if path is None else ""
        raise EngineError(f"{engine_dir}: engine directory not found{hint}")
    if not engine_dir.is_dir():
        raise EngineError(
            f"{engine_dir}: not a directory (an engine is a directory with model.onnx and engine.json)"
        )
    manifest = read_manifest(engine_dir)
    model_path = engine_dir / MODEL_NAME
    if not model_path.is_file():
        raise EngineError(f"{model_path}: model file not found")
    verify_file(engine_dir, MODEL_NAME, manifest.sha256[MODEL_NAME])
    if host is None:
        host = probe_host(want_trt=backend in ("auto", "tensorrt") and bool(manifest.tensorrt))
    choice = select_backend(backend, manifest, host, engine_dir)
    if choice.kind == "tensorrt" and choice.plan is not None:
        try:
            verify_file(engine_dir, choice.plan.plan, manifest.sha256.get(choice.plan.plan, ""))
            trt_backend = TensorRTBackend(engine_dir / choice.plan.plan)
            missing = [n for n in manifest.outputs.names if n not in trt_backend.output_names()]
            if missing:
                raise EngineError(f"{engine_dir / choice.plan.plan}: plan lacks outputs {missing}")
            engine = Engine(engine_dir, manifest, trt_backend)
            log.info(
                "engine %s %s from %s: backend %s",
                manifest.name,
                manifest.version,
                engine_dir,
                engine.backend,
            )
            return engine
        except EngineError as e:
            if backend == "tensorrt":
                raise
            log.warning("TensorRT plan unusable, falling back to ONNX Runtime: %s", e)
            choice = select_backend("auto", manifest, HostInfo(host.ort_providers), engine_dir)
    ort_backend = OrtBackend(
        model_path,
        choice.providers or (ORT_CPU,),
        digest=manifest.sha256[MODEL_NAME],
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )
    check_interface(model_path, manifest, ort_backend)
    if ort_backend.providers and ort_backend.providers[0] != choice.providers[0]:
        log.warning(
            "ONNX Runtime could not use %s; running on %s", choice.providers[0], ort_backend.providers[0]
        )
    engine = Engine(engine_dir, manifest, ort_backend)
    log.info(
        "engine %s %s from %s: backend %s (providers %s)",
        manifest.name,
        manifest.version,
        engine_dir,
        engine.backend,
        ", ".join(engine.providers),
    )
    return engine


def check_interface(model_path: Path, manifest: EngineManifest, backend: OrtBackend) -> None:
    """The graph must take one float ``audio`` [batch, samples] and emit the manifest's heads."""
    inputs = backend.input_signature()
    if len(inputs) != 1:
        raise EngineError(f"{model_path}: expected exactly one input 'audio', got {[i[0] for i in inputs]}")
    name, shape, dtype = inputs[0]
    if name != "audio":
        raise EngineError(f"{model_path}: input is named {name!r}, expected 'audio'")
    if len(shape) != 2:
        raise EngineError(f"{model_path}: input 'audio' has rank {len(shape)}, expected 2 [batch, samples]")
    if dtype != "tensor(float)":
        raise EngineError(f"{model_path}: input 'audio' is {dtype}, expected tensor(float)")
    outputs = dict(backend.output_signature())
    missing = [n for n in manifest.outputs.names if n not in outputs]
    if missing:
        raise EngineError(
            f"{model_path}: missing outputs {missing} listed in engine.json (graph has {sorted(outputs)})"
        )
    widths = {"logits": len(manifest.labels), "vad": 3}
    for head in manifest.outputs.names:
        shape_out = outputs[head]
        if len(shape_out) != 2:
            raise EngineError(f"{model_path}: output {head!r} has rank {len(shape_out)}, expected 2")
        if isinstance(shape_out[1], int) and shape_out[1] != widths[head]:
            raise EngineError(
                f"{model_path}: output {head!r} has width {shape_out[1]}, engine.json implies {widths[head]}"
            )
