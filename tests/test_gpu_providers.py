"""onnxruntime-gpu without TensorRT's libraries: the TensorRT provider is not requested (issue 15, item 14).

No GPU here, so ONNX Runtime's provider list is faked (the only mock); whether TensorRT's libraries load is
asked of this host's real dynamic linker, which has no TensorRT.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import onnxruntime
import pytest

from engines import EngineError
from engines.backends import ORT_CPU, ORT_CUDA, ORT_TRT, select_backend, tensorrt_ep_problem
from engines.loader import probe_host
from engines.manifest import read_manifest

GPU_BUILD = [ORT_TRT, ORT_CUDA, ORT_CPU]  # what onnxruntime-gpu lists, TensorRT installed or not


def _needs_no_tensorrt_here() -> None:
    if tensorrt_ep_problem() is None:
        pytest.skip("TensorRT's libraries load on this host: the no-TensorRT case cannot be shown")


def test_trt_provider_left_out_when_its_libraries_do_not_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _needs_no_tensorrt_here()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_BUILD))
    with caplog.at_level(logging.INFO, logger="engines.loader"):
        host = probe_host(want_trt=False)
    assert host.ort_providers == (ORT_CUDA, ORT_CPU)
    assert host.ort_trt_problem is not None and "libnvinfer" in host.ort_trt_problem
    assert "TensorRT provider left out" in caplog.text
    m = read_manifest(Path(__file__).resolve().parents[1] / "engines" / "default")
    choice = select_backend("auto", m, host, Path("/e"))
    assert choice.providers == (ORT_CUDA, ORT_CPU)  # CUDA runs; ORT is never asked for TensorRT
    with pytest.raises(EngineError) as err:
        select_backend("onnxruntime-trt", m, host, Path("/e"))
    assert "libnvinfer" in str(err.value) and "\n" not in str(err.value)


def test_trt_provider_kept_when_its_libraries_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_BUILD))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: object())  # stands for an installed TensorRT
    host = probe_host(want_trt=False)
    assert host.ort_providers == tuple(GPU_BUILD) and host.ort_trt_problem is None


def test_cpu_build_is_not_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*a: object, **k: object) -> object:
        raise AssertionError("no TensorRT provider listed: nothing to load")

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [ORT_CPU])
    monkeypatch.setattr(ctypes, "CDLL", fail)
    assert probe_host(want_trt=False).ort_providers == (ORT_CPU,)
