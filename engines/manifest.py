"""engine.json as a typed, validated, frozen dataclass (schema in ARCHITECTURE.md).

The manifest is the contract between whoever trained an engine and the daemon that runs it: labels,
output heads, the window geometry the model was trained on and the checksums that guard the files.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engines.errors import EngineError

MANIFEST_NAME = "engine.json"
MODEL_NAME = "model.onnx"
SCHEMA_VERSIONS = (1,)
SAMPLE_RATE = 16_000
PADDING_POLICIES = ("zeros", "repeat")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class EngineOutputs:
    """Which heads the graph has: ``logits`` [B, n_labels] and/or ``vad`` [B, 3]."""

    logits: bool = True
    vad: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """ONNX output names in their fixed order (logits first)."""
        return tuple(n for n, on in (("logits", self.logits), ("vad", self.vad)) if on)


@dataclass(frozen=True)
class Provenance:
    """Where an engine came from, so a result can be traced back to data, code and command."""

    training_data: str = ""
    code_version: str = ""
    created: str = ""
    license: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    command: str = ""


@dataclass(frozen=True)
class TensorRTPlan:
    """One prebuilt TensorRT plan: valid only on the GPU model and TensorRT version it was built for."""

    plan: str
    gpu: str
    tensorrt_version: str
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineManifest:
    """Typed engine.json. Structural checks run on construction; checksums via ``validate``."""

    name: str
    version: str
    labels: tuple[str, ...] = ()
    outputs: EngineOutputs = field(default_factory=EngineOutputs)
    vad_range: tuple[float, float] = (-1.0, 1.0)
    sample_rate: int = SAMPLE_RATE
    window_s: float = 2.0
    hop_s: float = 0.5
    min_window_s: float = 0.5
    max_window_s: float = 8.0
    padding: str = "repeat"
    sha256: dict[str, str] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)
    tensorrt: tuple[TensorRTPlan, ...] = ()
    schema_version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "vad_range", tuple(float(v) for v in self.vad_range))
        object.__setattr__(self, "tensorrt", tuple(self.tensorrt))
        problem = _structural_problem(self)
        if problem:
            raise EngineError(f"engine manifest: {problem}")

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * self.sample_rate)

    @property
    def min_samples(self) -> int:
        return round(self.min_window_s * self.sample_rate)

    @property
    def max_samples(self) -> int:
        return round(self.max_window_s * self.sample_rate)

    def validate(self) -> None:
        """Full validation, including that model.onnx has a well-formed sha256."""
        digest = self.sha256.get(MODEL_NAME)
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise EngineError(f"engine manifest: sha256 for {MODEL_NAME} is missing or not 64 hex digits")
        for rel, value in self.sha256.items():
            if not isinstance(value, str) or not _HEX64.match(value):
                raise EngineError(f"engine manifest: sha256 for {rel} is not 64 hex digits")

    def with_checksums(self, checksums: dict[str, str]) -> EngineManifest:
        """A copy whose sha256 table has ``checksums`` merged in."""
        return replace(self, sha256={**self.sha256, **checksums})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to engine.json."""
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "outputs": {"logits": self.outputs.logits, "vad": self.outputs.vad},
            "vad_range": list(self.vad_range),
            "sample_rate": self.sample_rate,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "min_window_s": self.min_window_s,
            "max_window_s": self.max_window_s,
            "padding": self.padding,
            "sha256": dict(self.sha256),
            "provenance": {
                "training_data": self.provenance.training_data,
                "code_version": self.provenance.code_version,
                "created": self.provenance.created,
                "license": self.provenance.license,
                "metrics": self.provenance.metrics,
                "command": self.provenance.command,
            },
            "tensorrt": [
                {"plan": p.plan, "gpu": p.gpu, "tensorrt_version": p.tensorrt_version, "profile": p.profile}
                for p in self.tensorrt
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> EngineManifest:
        """Parse a decoded engine.json; raises EngineError (without a path) on any schema problem."""
        if not isinstance(data, dict):
            raise EngineError("engine manifest: top level must be a JSON object")
        version = data.get("schema_version")
        if version not in SCHEMA_VERSIONS:
            raise EngineError(f"engine manifest: unknown schema_version {version!r} (known: 1)")
        try:
            outputs = data.get("outputs", {})
            prov = data.get("provenance", {}) or {}
            return cls(
                schema_version=int(version),
                name=_str(data, "name"),
                version=_str(data, "version"),
                labels=tuple(_str_list(data.get("labels", []), "labels")),
                outputs=EngineOutputs(logits=_bool(outputs, "logits", True), vad=_bool(outputs, "vad", True)),
                vad_range=_pair(data.get("vad_range", [-1.0, 1.0])),
                sample_rate=_int(data, "sample_rate"),
                window_s=_num(data, "window_s"),
                hop_s=_num(data, "hop_s"),
                min_window_s=_num(data, "min_window_s"),
                max_window_s=_num(data, "max_window_s"),
                padding=_str(data, "padding"),
                sha256=_str_dict(data.get("sha256", {}), "sha256"),
                provenance=Provenance(
                    training_data=str(prov.get("training_data", "")),
                    code_version=str(prov.get("code_version", "")),
                    created=str(prov.get("created", "")),
                    license=str(prov.get("license", "")),
                    metrics=dict(prov.get("metrics", {}) or {}),
                    command=str(prov.get("command", "")),
                ),
                tensorrt=tuple(_plan(p) for p in data.get("tensorrt", []) or []),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise EngineError(f"engine manifest: {e}") from e


def _structural_problem(m: EngineManifest) -> str | None:
    """First structural inconsistency in ``m``, or None."""
    checks: list[tuple[bool, str]] = [
        (m.schema_version in SCHEMA_VERSIONS, f"unknown schema_version {m.schema_version!r} (known: 1)"),
        (bool(m.name), "name is empty"),
        (bool(m.version), "version is empty"),
        (m.outputs.logits or m.outputs.vad, "outputs: at least one of logits/vad must be true"),
        (not m.outputs.logits or len(m.labels) > 0, "labels must be non-empty when outputs.logits is true"),
        (len(set(m.labels)) == len(m.labels), f"labels must be unique, got {list(m.labels)}"),
        (all(isinstance(x, str) and x for x in m.labels), "labels must be non-empty strings"),
        (m.sample_rate == SAMPLE_RATE, f"sample_rate must be {SAMPLE_RATE}, got {m.sample_rate}"),
        (
            len(m.vad_range) == 2 and m.vad_range[0] < m.vad_range[1],
            "vad_range must be [low, high], low < high",
        ),
        (m.padding in PADDING_POLICIES, f"padding must be one of {PADDING_POLICIES}, got {m.padding!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            return msg
    times = (m.min_window_s, m.window_s, m.max_window_s, m.hop_s)
    if not all(isinstance(t, int | float) and math.isfinite(t) and t > 0 for t in times):
        return "window_s, hop_s, min_window_s and max_window_s must be positive numbers"
    if not m.min_window_s <= m.window_s <= m.max_window_s:
        return (
            f"need min_window_s <= window_s <= max_window_s, got "
            f"{m.min_window_s} / {m.window_s} / {m.max_window_s}"
        )
    if m.hop_s > m.window_s:
        return f"hop_s ({m.hop_s}) must not exceed window_s ({m.window_s})"
    return None


def read_manifest(engine_dir: str | Path) -> EngineManifest:
    """Read and fully validate ``<engine_dir>/engine.json``; every failure names that file."""
    path = Path(engine_dir) / MANIFEST_NAME
    if not path.is_file():
        raise EngineError(f"{path}: engine manifest not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise EngineError(f"{path}: not UTF-8 text") from e
    except json.JSONDecodeError as e:
        raise EngineError(f"{path}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except OSError as e:
        raise EngineError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        manifest = EngineManifest.from_dict(data)
        manifest.validate()
    except EngineError as e:
        raise EngineError(f"{path}: {_strip_prefix(str(e))}") from e
    return manifest


def write_manifest(engine_dir: str | Path, manifest: EngineManifest) -> Path:
    """Validate and atomically write ``<engine_dir>/engine.json`` (temp file + rename)."""
    path = Path(engine_dir) / MANIFEST_NAME
    try:
        manifest.validate()
    except EngineError as e:
        raise EngineError(f"{path}: {_strip_prefix(str(e))}") from e
    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".engine.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _strip_prefix(msg: str) -> str:
    return msg.removeprefix("engine manifest: ")


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string, got {v!r}")
    return v


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{key} must be an integer, got {v!r}")
    return v


def _num(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValueError(f"{key} must be a number, got {v!r}")
    return float(v)


def _bool(d: Any, key: str, default: bool) -> bool:
    if not isinstance(d, dict):
        raise ValueError('outputs must be an object like {"logits": true, "vad": true}')
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ValueError(f"outputs.{key} must be true or false, got {v!r}")
    return v


def _pair(v: Any) -> tuple[float, float]:
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise ValueError(f"vad_range must be a list of two numbers, got {v!r}")
    return float(v[0]), float(v[1])


def _str_list(v: Any, key: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{key} must be a list of strings")
    return list(v)


def _str_dict(v: Any, key: str) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValueError(f"{key} must map file names to hex digests")
    return dict(v)


def _plan(p: Any) -> TensorRTPlan:
    if not isinstance(p, dict):
        raise ValueError("tensorrt entries must be objects")
    return TensorRTPlan(
        plan=_str(p, "plan"),
        gpu=_str(p, "gpu"),
        tensorrt_version=_str(p, "tensorrt_version"),
        profile=dict(p.get("profile", {}) or {}),
    )
