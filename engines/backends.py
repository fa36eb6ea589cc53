"""Runtime backends: which one to use (a pure decision) and the ONNX Runtime session behind it.

Selection is kept pure (`select_backend` over a `HostInfo` snapshot) so it can be tested on a host
without a GPU; probing the host and opening sessions are the only parts that touch real runtimes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engines.errors import EngineError
from engines.manifest import EngineManifest, TensorRTPlan

log = logging.getLogger(__name__)

ORT_TRT = "TensorrtExecutionProvider"
ORT_CUDA = "CUDAExecutionProvider"
ORT_CPU = "CPUExecutionProvider"
BACKENDS = ("auto", "tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu")
_PROVIDER_BACKEND = {ORT_TRT: "onnxruntime-trt", ORT_CUDA: "onnxruntime-cuda", ORT_CPU: "onnxruntime-cpu"}

FloatArray = npt.NDArray[np.float32]


class Backend(Protocol):
    """What the Engine needs from a runtime: run one [B, N] float32 batch, return outputs by name."""

    @property
    def name(self) -> str: ...

    @property
    def providers(self) -> tuple[str, ...]: ...

    def run(self, audio: FloatArray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class HostInfo:
    """What this host can run: ORT providers, and the GPU/TensorRT pair when both are usable."""

    ort_providers: tuple[str, ...]
    gpu_name: str | None = None
    tensorrt_version: str | None = None
    ort_trt_problem: str | None = None  # why ORT's TensorRT provider was left out of ort_providers


@dataclass(frozen=True)
class BackendChoice:
    """The decision: a TensorRT plan, or ONNX Runtime with an ordered provider list."""

    kind: str  # "tensorrt" | "onnxruntime"
    providers: tuple[str, ...] = ()
    plan: TensorRTPlan | None = None
    reason: str = ""


def matching_plan(manifest: EngineManifest, host: HostInfo) -> TensorRTPlan | None:
    """The plan built for exactly this GPU model and TensorRT version (plans are not portable)."""
    if host.gpu_name is None or host.tensorrt_version is None:
        return None
    for plan in manifest.tensorrt:
        if plan.gpu == host.gpu_name and plan.tensorrt_version == host.tensorrt_version:
            return plan
    return None


def select_backend(requested: str, manifest: EngineManifest, host: HostInfo, where: Path) -> BackendChoice:
    """Decide the backend for ``requested``; raise EngineError (naming ``where``) when it cannot run here."""
    if requested not in BACKENDS:
        raise EngineError(f"{where}: unknown backend {requested!r} (choose from {', '.join(BACKENDS)})")
    avail = set(host.ort_providers)
    plan = matching_plan(manifest, host)
    if requested in ("auto", "tensorrt") and plan is not None:
        return BackendChoice("tensorrt", plan=plan, reason=f"TensorRT plan {plan.plan} matches {plan.gpu}")
    if requested == "tensorrt":
        if host.tensorrt_version is None or host.gpu_name is None:
            raise EngineError(f"{where}: backend 'tensorrt' needs an NVIDIA GPU and the tensorrt package")
        raise EngineError(
            f"{where}: no TensorRT plan for {host.gpu_name} / TensorRT {host.tensorrt_version} "
            "in engine.json (build one with `emotrack build-trt`)"
        )
    wanted = {
        "auto": (ORT_TRT, ORT_CUDA, ORT_CPU),
        "onnxruntime-trt": (ORT_TRT, ORT_CUDA, ORT_CPU),
        "onnxruntime-cuda": (ORT_CUDA, ORT_CPU),
        "onnxruntime-cpu": (ORT_CPU,),
    }[requested]
    first = wanted[0]
    if requested != "auto" and first == ORT_TRT and host.ort_trt_problem is not None:
        raise EngineError(
            f"{where}: backend 'onnxruntime-trt' needs TensorRT's libraries, which do not load here "
            f"({host.ort_trt_problem}); use 'onnxruntime-cuda' or install TensorRT"
        )
    if requested != "auto" and first not in avail:
        raise EngineError(
            f"{where}: backend {requested!r} needs ONNX Runtime's {first}, which this onnxruntime "
            f"build lacks (available: {', '.join(host.ort_providers) or 'none'})"
        )
    providers = tuple(p for p in wanted if p in avail)
    if ORT_CPU not in providers:
        providers = (*providers, ORT_CPU)
    return BackendChoice("onnxruntime", providers=providers, reason=f"{requested}: {', '.join(providers)}")


def tensorrt_ep_problem() -> str | None:
    """Why ONNX Runtime's TensorRT provider cannot run here, or None when its libraries load.

    onnxruntime-gpu lists the provider whether or not TensorRT is installed; asked to use it without
    TensorRT's libraries it prints a red "Failed to load library libnvinfer.so.10" block and an "EP Error"
    banner before falling back to CUDA. So the provider is requested only when its library (and so every
    library it needs) loads.
    """
    import ctypes

    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    provider = capi / "libonnxruntime_providers_tensorrt.so"
    try:
        if provider.is_file():  # loads only if every library it needs does (as ORT loads them)
            ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
            ctypes.CDLL(str(provider))
        else:
            ctypes.CDLL("libnvinfer.so.10")
    except OSError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def backend_label(providers: tuple[str, ...]) -> str:
    """Canonical backend name for the provider that actually runs first (ORT may fall back silently)."""
    return _PROVIDER_BACKEND.get(providers[0], f"onnxruntime({providers[0]})") if providers else "onnxruntime"


def _trt_ep_options(model_path: Path, digest: str) -> dict[str, str]:
    """ORT's TensorRT EP builds engines lazily; cache them per model checksum in the user cache dir."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = base / "emotrack" / "ort-trt" / digest[:16]
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a service user without a home: build every start instead
        log.warning("no TensorRT engine cache (%s): %s", cache, e.strerror or e)
        return {}
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}


class OrtBackend:
    """One ONNX Runtime session with full graph optimisation and configurable thread pools."""

    def __init__(
        self,
        model_path: Path,
        providers: tuple[str, ...],
        *,
        digest: str = "",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: provider fallbacks are reported by us, once
        # No spin-waiting between calls: the engine runs in bursts beside capture and publishing, and a
        # spinning pool burnt ~4x the CPU per call in `emotrack bench` with 2 threads (docs/bench.md).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if intra_op_threads is not None:
            so.intra_op_num_threads = intra_op_threads
        if inter_op_threads is not None:
            so.inter_op_num_threads = inter_op_threads
            if inter_op_threads > 1:
                so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        provider_args: list[str | tuple[str, dict[str, str]]] = [
            (p, _trt_ep_options(model_path, digest or "nodigest")) if p == ORT_TRT else p for p in providers
        ]
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=so, providers=provider_args)
        except Exception as e:  # ORT raises several pybind types; all mean "this file is unusable"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EngineError(f"{model_path}: ONNX Runtime cannot load the model ({first[:300]})") from e
        self._providers = tuple(self._session.get_providers())
        self._input = self._session.get_inputs()[0].name if self._session.get_inputs() else ""

    @property
    def name(self) -> str:
        return backend_label(self._providers)

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    def input_signature(self) -> list[tuple[str, list[int | str | None], str]]:
        """(name, shape, type) of each graph input, for the loader's interface checks."""
        return [(i.name, list(i.shape), i.type) for i in self._session.get_inputs()]

    def output_signature(self) -> list[tuple[str, list[int | str | None]]]:
        return [(o.name, list(o.shape)) for o in self._session.get_outputs()]

    def run(self, audio: FloatArray) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        values = self._session.run(names, {self._input: audio})
        return dict(zip(names, values, strict=True))
