"""TensorRT plan backend and host probing (tensorrt + cuda-python bindings; both optional).

A plan is a compiled engine for one GPU model and TensorRT version, with an optimisation profile
bounding batch and length; batches above the profile are split, lengths outside it are refused.
Nothing here is imported unless the host has the packages, so CPU-only installs never pay for it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.errors import EngineError

log = logging.getLogger(__name__)


def gpu_slug(name: str) -> str:
    """File-name-safe GPU name: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def import_cudart() -> ModuleType | None:
    """cuda-python's runtime bindings under either of their module paths, or None."""
    for mod in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(mod)
        except ImportError:
            continue
    return None


def import_tensorrt() -> ModuleType | None:
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        return None


def _call(result: Any, what: str) -> Any:
    """cuda-python returns (err, *values); turn a non-success err into EngineError."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"CUDA call {what} failed with error {int(err)}")
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class TrtHost:
    """The GPU (device 0) name and TensorRT version, present only when both are usable."""

    gpu_name: str
    tensorrt_version: str


def probe_trt_host() -> TrtHost | None:
    """GPU name and TensorRT version, or None when either the packages or a GPU are missing."""
    trt, cudart = import_tensorrt(), import_cudart()
    if trt is None or cudart is None:
        return None
    try:
        count = _call(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if int(count) < 1:
            return None
        props = _call(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    except Exception as e:  # no driver, no device: treat the same as "no GPU"
        log.debug("CUDA probe failed: %s", e)
        return None
    raw = props.name
    name = raw.decode(errors="replace").rstrip("\x00") if isinstance(raw, bytes) else str(raw)
    return TrtHost(gpu_name=name.strip(), tensorrt_version=str(trt.__version__))


class _DeviceBuffer:
    """A growable device allocation (re-allocated only when a larger batch arrives)."""

    def __init__(self, cudart: ModuleType) -> None:
        self._cudart = cudart
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(_call(self._cudart.cudaMalloc(max(nbytes, 256)), "cudaMalloc"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTBackend:
    """Runs a serialized TensorRT plan with explicit device buffers on a private CUDA stream."""

    def __init__(self, plan_path: Path, input_name: str = "audio") -> None:
        trt, cudart = import_tensorrt(), import_cudart()
        if trt is None or cudart is None:
            raise EngineError(f"{plan_path}: the tensorrt and cuda-python packages are needed for this plan")
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        try:
            blob = plan_path.read_bytes()
        except OSError as e:
            raise EngineError(f"{plan_path}: cannot read TensorRT plan ({e.strerror or e})") from e
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise EngineError(f"{plan_path}: TensorRT cannot deserialize this plan (other GPU or version?)")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._input = input_name
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if input_name not in names:
            raise EngineError(f"{plan_path}: plan has no input {input_name!r} (tensors: {names})")
        lo, _opt, hi = engine.get_tensor_profile_shape(input_name, 0)
        self.min_batch, self.min_samples = int(lo[0]), int(lo[1])
        self.max_batch, self.max_samples = int(hi[0]), int(hi[1])
        self._stream = _call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers = {n: _DeviceBuffer(cudart) for n in names}
        self._plan_path = plan_path
        self._lock = threading.Lock()  # one execution context: serialise callers from several threads

    @property
    def name(self) -> str:
        return "tensorrt"

    @property
    def providers(self) -> tuple[str, ...]:
        return (f"TensorRT {self._trt.__version__}",)

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        n = audio.shape[1]
        if not self.min_samples <= n <= self.max_samples:
            raise ValueError(
                f"{self._plan_path}: plan profile accepts {self.min_samples}..{self.max_samples} samples, "
                f"got {n} (rebuild the plan with a wider profile or use backend onnxruntime-*)"
            )
        step = self.max_batch
        with self._lock:
            parts = [self._run_chunk(audio[i : i + step]) for i in range(0, audio.shape[0], step)]
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in self._outputs}

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        trt, cudart, ctx = self._trt, self._cudart, self._context
        if chunk.shape[0] < self.min_batch:  # pad up to the profile minimum, drop the extra rows after
            pad = np.zeros((self.min_batch - chunk.shape[0], chunk.shape[1]), dtype=np.float32)
            rows, chunk = chunk.shape[0], np.ascontiguousarray(np.concatenate([chunk, pad]))
        else:
            rows = chunk.shape[0]
        ctx.set_input_shape(self._input, tuple(chunk.shape))
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        in_ptr = self._buffers[self._input].ensure(chunk.nbytes)
        _call(
            cudart.cudaMemcpyAsync(in_ptr, chunk.ctypes.data, chunk.nbytes, h2d, self._stream), "memcpy H2D"
        )
        ctx.set_tensor_address(self._input, in_ptr)
        hosts: dict[str, np.ndarray] = {}
        for name in self._outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            host = np.empty(shape, dtype=trt.nptype(self._engine.get_tensor_dtype(name)))
            ctx.set_tensor_address(name, self._buffers[name].ensure(host.nbytes))
            hosts[name] = host
        if not ctx.execute_async_v3(stream_handle=int(self._stream)):
            raise EngineError(f"{self._plan_path}: TensorRT execution failed")
        for name, host in hosts.items():
            ptr = self._buffers[name].ptr
            _call(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self._stream), "memcpy D2H")
        _call(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {k: v[:rows].astype(np.float32, copy=False) for k, v in hosts.items()}

    def close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
