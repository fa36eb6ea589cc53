"""A loaded engine: validated input in, logits/probabilities/VAD out, padding per the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engines.backends import Backend
from engines.errors import EngineError
from engines.manifest import MODEL_NAME, EngineManifest

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EngineResult:
    """Per-row outputs of one batch; a head the engine lacks is None."""

    logits: FloatArray | None
    probabilities: FloatArray | None  # softmax of logits, rows sum to 1
    vad: FloatArray | None  # [B, 3] valence, arousal, dominance in manifest.vad_range


def softmax(logits: np.ndarray) -> FloatArray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Engine:
    """An engine bound to one backend. ``infer`` is thread-safe as far as the backend is (ORT is)."""

    def __init__(self, path: Path, manifest: EngineManifest, backend: Backend) -> None:
        self.path = path
        self.manifest = manifest
        self._backend = backend

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def backend(self) -> str:
        """Canonical backend in use: tensorrt | onnxruntime-trt | onnxruntime-cuda | onnxruntime-cpu."""
        return self._backend.name

    @property
    def providers(self) -> tuple[str, ...]:
        """What actually runs the graph (ORT provider list in priority order, or the TensorRT version)."""
        return self._backend.providers

    def __repr__(self) -> str:
        m = self.manifest
        return f"Engine({m.name} {m.version} at {self.path}, backend={self.backend})"

    def pad_to_min(self, samples: np.ndarray, target: int | None = None) -> FloatArray:
        """Bring a mono segment up to ``target`` samples (default min_window) per the padding policy.

        "repeat" tiles the segment (keeps the spectral statistics of speech); "zeros" appends silence.
        Longer segments are returned unchanged (as contiguous float32).
        """
        x = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        n = self.manifest.min_samples if target is None else int(target)
        if len(x) >= n:
            return x
        if self.manifest.padding == "repeat" and len(x) > 0:
            return np.ascontiguousarray(np.tile(x, -(-n // len(x)))[:n])
        return np.concatenate([x, np.zeros(n - len(x), dtype=np.float32)])

    def infer(self, audio: np.ndarray) -> EngineResult:
        """Score a batch [B, N] of float PCM at 16 kHz in [-1, 1]; every row has the same length N."""
        if not isinstance(audio, np.ndarray):
            raise TypeError(f"audio must be a numpy array, got {type(audio).__name__}")
        if audio.ndim != 2:
            raise ValueError(f"audio must have shape [batch, samples], got {audio.shape}")
        if audio.dtype.kind != "f":
            raise ValueError(f"audio must be float PCM in [-1, 1], got dtype {audio.dtype} (convert first)")
        if audio.shape[1] == 0:
            raise ValueError("audio has zero samples per row")
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("audio contains NaN or infinite samples")
        outs = self._heads()
        if x.shape[0] == 0:
            empty = {n: np.zeros((0, self._width(n)), dtype=np.float32) for n in outs}
            return self._result(empty)
        raw = self._backend.run(x)
        got: dict[str, FloatArray] = {}
        for name in outs:
            arr = np.asarray(raw[name], dtype=np.float32)
            want = (x.shape[0], self._width(name))
            if arr.shape != want:
                raise EngineError(
                    f"{self.path / MODEL_NAME}: output {name} has shape {arr.shape}, expected {want}"
                )
            got[name] = arr
        return self._result(got)

    def _heads(self) -> tuple[str, ...]:
        return self.manifest.outputs.names

    def _width(self, name: str) -> int:
        return len(self.labels) if name == "logits" else 3

    def _result(self, got: dict[str, FloatArray]) -> EngineResult:
        logits = got.get("logits")
        return EngineResult(
            logits=logits,
            probabilities=softmax(logits) if logits is not None else None,
            vad=got.get("vad"),
        )
