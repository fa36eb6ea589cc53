"""engines/: manifest schema and round trip, backend selection logic (pure), TensorRT fallback path."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from engines import (
    EngineError,
    EngineManifest,
    EngineOutputs,
    HostInfo,
    Provenance,
    TensorRTPlan,
    load_engine,
    read_manifest,
    select_backend,
    sha256_file,
    write_manifest,
)
from engines.backends import ORT_CPU, ORT_CUDA, ORT_TRT
from engines.trt import gpu_slug
from tests.test_engines import _assert_one_line_naming, _rewrite_manifest

# --------------------------------------------------------------------------- manifest


def _manifest(**kw: object) -> EngineManifest:
    base: dict[str, object] = {
        "name": "m",
        "version": "1",
        "labels": ("a", "b"),
        "sha256": {"model.onnx": "a" * 64},
    }
    base.update(kw)
    return EngineManifest(**base)  # type: ignore[arg-type]


def test_manifest_round_trip(tmp_path: Path) -> None:
    m = _manifest(
        provenance=Provenance(training_data="RAVDESS", metrics={"uar": 0.61}, command="emotrack train"),
        tensorrt=(
            TensorRTPlan(
                plan="trt/x.plan", gpu="NVIDIA H100", tensorrt_version="10.3.0", profile={"max": [64, 1]}
            ),
        ),
        outputs=EngineOutputs(logits=True, vad=False),
        padding="zeros",
    )
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m
    assert EngineManifest.from_dict(json.loads((tmp_path / "engine.json").read_text())) == m
    assert (tmp_path / "engine.json").stat().st_mode & 0o777 == 0o644


def test_manifest_real_engine(tiny_engine_dir: Path) -> None:
    m = read_manifest(tiny_engine_dir)
    assert m.sha256["model.onnx"] == sha256_file(tiny_engine_dir / "model.onnx")
    assert m.outputs.names == ("logits", "vad")
    assert m.provenance.created


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"labels": []}, "labels"),
        ({"labels": ["a", "a"]}, "unique"),
        ({"sample_rate": 8000}, "sample_rate"),
        ({"min_window_s": 3.0}, "min_window_s"),
        ({"max_window_s": 1.0}, "max_window_s"),
        ({"hop_s": 5.0}, "hop_s"),
        ({"window_s": -1.0}, "positive"),
        ({"padding": "mirror"}, "padding"),
        ({"sha256": {}}, "sha256"),
        ({"sha256": {"model.onnx": "xyz"}}, "sha256"),
        ({"outputs": {"logits": False, "vad": False}}, "outputs"),
        ({"window_s": "2"}, "window_s"),
        ({"vad_range": [1.0, -1.0]}, "vad_range"),
    ],
)
def test_manifest_validation_names_file(
    tiny_engine_copy: Path, change: dict[str, object], needle: str
) -> None:
    _rewrite_manifest(tiny_engine_copy, **change)
    with pytest.raises(EngineError, match=needle) as err:
        read_manifest(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "engine.json")
    with pytest.raises(EngineError):
        load_engine(tiny_engine_copy)


def test_vad_only_manifest_needs_no_labels() -> None:
    m = _manifest(labels=(), outputs=EngineOutputs(logits=False, vad=True))
    assert m.outputs.names == ("vad",)
    with pytest.raises(EngineError, match="labels"):
        _manifest(labels=())


def test_write_manifest_refuses_missing_checksum(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="sha256") as err:
        write_manifest(tmp_path, _manifest(sha256={}))
    _assert_one_line_naming(err, tmp_path / "engine.json")
    assert not (tmp_path / "engine.json").exists()


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    data = bytes(range(256)) * 9000
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- backend selection


H100 = "NVIDIA H100 80GB HBM3"
PLAN = TensorRTPlan(plan="trt/h100.plan", gpu=H100, tensorrt_version="10.3.0")
CPU_ONLY = HostInfo(ort_providers=(ORT_CPU,))
GPU_HOST = HostInfo(ort_providers=(ORT_TRT, ORT_CUDA, ORT_CPU), gpu_name=H100, tensorrt_version="10.3.0")
WHERE = Path("/engines/x")


def test_select_auto_cpu_only() -> None:
    c = select_backend("auto", _manifest(tensorrt=(PLAN,)), CPU_ONLY, WHERE)
    assert c.kind == "onnxruntime" and c.providers == (ORT_CPU,)


def test_select_auto_prefers_matching_plan() -> None:
    c = select_backend("auto", _manifest(tensorrt=(PLAN,)), GPU_HOST, WHERE)
    assert c.kind == "tensorrt" and c.plan == PLAN


def test_select_auto_without_plan_uses_ort_gpu_providers_in_order() -> None:
    c = select_backend("auto", _manifest(), GPU_HOST, WHERE)
    assert c.kind == "onnxruntime" and c.providers == (ORT_TRT, ORT_CUDA, ORT_CPU)
    cuda_only = HostInfo(ort_providers=(ORT_CPU, ORT_CUDA))
    assert select_backend("auto", _manifest(), cuda_only, WHERE).providers == (ORT_CUDA, ORT_CPU)


@pytest.mark.parametrize(
    "plan",
    [replace(PLAN, gpu="NVIDIA A100-SXM4-40GB"), replace(PLAN, tensorrt_version="10.4.0")],
)
def test_select_ignores_plans_for_other_gpu_or_version(plan: TensorRTPlan) -> None:
    c = select_backend("auto", _manifest(tensorrt=(plan,)), GPU_HOST, WHERE)
    assert c.kind == "onnxruntime"
    with pytest.raises(EngineError, match="no TensorRT plan for NVIDIA H100") as err:
        select_backend("tensorrt", _manifest(tensorrt=(plan,)), GPU_HOST, WHERE)
    _assert_one_line_naming(err, WHERE)


def test_select_explicit_backends() -> None:
    m = _manifest(tensorrt=(PLAN,))
    assert select_backend("onnxruntime-cpu", m, GPU_HOST, WHERE).providers == (ORT_CPU,)
    assert select_backend("onnxruntime-cuda", m, GPU_HOST, WHERE).providers == (ORT_CUDA, ORT_CPU)
    assert select_backend("onnxruntime-trt", m, GPU_HOST, WHERE).providers == (ORT_TRT, ORT_CUDA, ORT_CPU)
    assert select_backend("tensorrt", m, GPU_HOST, WHERE).plan == PLAN


@pytest.mark.parametrize("backend", ["tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "cuda", ""])
def test_select_unavailable_or_unknown(backend: str) -> None:
    with pytest.raises(EngineError) as err:
        select_backend(backend, _manifest(tensorrt=(PLAN,)), CPU_ONLY, WHERE)
    _assert_one_line_naming(err, WHERE)


def test_load_falls_back_when_plan_cannot_run(
    tiny_engine_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A plan that matches the (reported) GPU but cannot be opened: auto falls back, tensorrt fails."""
    plan = tiny_engine_copy / "trt" / "fake.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"not a real TensorRT plan")
    m = read_manifest(tiny_engine_copy)
    entry = TensorRTPlan(plan="trt/fake.plan", gpu=H100, tensorrt_version="10.3.0")
    write_manifest(
        tiny_engine_copy, replace(m.with_checksums({"trt/fake.plan": sha256_file(plan)}), tensorrt=(entry,))
    )
    host = HostInfo(ort_providers=(ORT_CPU,), gpu_name=H100, tensorrt_version="10.3.0")
    with caplog.at_level("WARNING"):
        engine = load_engine(tiny_engine_copy, host=host, intra_op_threads=1)
    assert engine.backend == "onnxruntime-cpu"
    assert "falling back" in caplog.text
    with pytest.raises(EngineError) as err:
        load_engine(tiny_engine_copy, backend="tensorrt", host=host)
    assert "\n" not in str(err.value)


def test_load_rejects_unavailable_backend(tiny_engine_dir: Path) -> None:
    with pytest.raises(EngineError, match="CUDAExecutionProvider") as err:
        load_engine(tiny_engine_dir, backend="onnxruntime-cuda", host=CPU_ONLY)
    _assert_one_line_naming(err, tiny_engine_dir)


def test_gpu_slug() -> None:
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert gpu_slug("***") == "gpu"
