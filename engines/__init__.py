"""Engine loading, validation and inference (ONNX Runtime / TensorRT); never imports torch."""

from engines.backends import BACKENDS, BackendChoice, HostInfo, select_backend
from engines.engine import Engine, EngineResult, softmax
from engines.errors import EngineError
from engines.integrity import sha256_file, verify_checksums
from engines.loader import bundled_engine_path, default_engine_path, load_engine, resolve_engine_path
from engines.manifest import (
    EngineManifest,
    EngineOutputs,
    Provenance,
    TensorRTPlan,
    read_manifest,
    write_manifest,
)

__all__ = [
    "BACKENDS",
    "BackendChoice",
    "Engine",
    "EngineError",
    "EngineManifest",
    "EngineOutputs",
    "EngineResult",
    "HostInfo",
    "Provenance",
    "TensorRTPlan",
    "bundled_engine_path",
    "default_engine_path",
    "load_engine",
    "read_manifest",
    "resolve_engine_path",
    "select_backend",
    "sha256_file",
    "softmax",
    "verify_checksums",
    "write_manifest",
]
