"""training/export.py, training/frontend.py, training/build_trt.py: real exports checked with ORT."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch", reason="export tests need the .[train] extra (torch)")
onnx = pytest.importorskip("onnx")

from engines import EngineError, EngineManifest, EngineOutputs, load_engine, read_manifest, sha256_file  # noqa: E402
from engines.trt import import_cudart, import_tensorrt, probe_trt_host  # noqa: E402
from tests.tiny_engine import build_tiny_engine, tiny_model  # noqa: E402
from training.build_trt import TensorRTUnavailable, build_plans  # noqa: E402
from training.export import _inline_external_data, check_parity, export_engine, speech_like  # noqa: E402
from training.frontend import MFCC, LogMel, STFTPower, mel_filterbank  # noqa: E402

SR = 16_000


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _manifest(**kw: object) -> EngineManifest:
    base: dict[str, object] = {"name": "t", "version": "1", "labels": ("a", "b", "c")}
    base.update(kw)
    return EngineManifest(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- exporter


def test_exported_graph_is_one_file_with_dynamic_axes(tiny_engine_dir: Path) -> None:
    assert sorted(p.name for p in tiny_engine_dir.iterdir()) == ["engine.json", "model.onnx"]
    proto = onnx.load(str(tiny_engine_dir / "model.onnx"))
    onnx.checker.check_model(proto)
    (inp,) = proto.graph.input
    assert inp.name == "audio"
    dims = inp.type.tensor_type.shape.dim
    assert len(dims) == 2 and all(d.dim_param and not d.HasField("dim_value") for d in dims)
    assert [o.name for o in proto.graph.output] == ["logits", "vad"]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def test_parity_default_signal(tiny_engine_dir: Path) -> None:
    report = check_parity(tiny_model(), tiny_engine_dir)
    assert report.passed, str(report)
    assert sorted(report.cases) == sorted((b, n) for b in (1, 3) for n in (8000, 16000, 40000))
    assert set(report.max_abs_diff) == {"logits", "vad"}
    assert report.worst <= 1e-3 and float(report) == report.worst
    assert "PASS" in str(report) and "tolerance 0.001" in str(report)


def test_parity_real_speech_odd_shapes(tiny_engine_dir: Path, speech_wav: Path) -> None:
    audio, _ = sf.read(speech_wav, dtype="float32")
    clips = [audio[i * SR : (i + 2) * SR] for i in range(1, 4)]
    report = check_parity(
        tiny_model(), tiny_engine_dir, lengths=(401, 4321, 131_072), batch_sizes=(2, 7), audio=clips
    )
    assert report.passed, str(report)
    assert len(report.per_case) == 6


def test_parity_detects_a_different_model(tiny_engine_dir: Path) -> None:
    report = check_parity(tiny_model(seed=1), tiny_engine_dir, lengths=(16000,), batch_sizes=(2,))
    assert not report.passed
    assert "FAIL" in str(report)


def test_export_is_deterministic(tmp_path: Path, tiny_engine_dir: Path) -> None:
    d = build_tiny_engine(tmp_path / "again")
    assert read_manifest(d).sha256 == read_manifest(tiny_engine_dir).sha256


@pytest.mark.parametrize(("logits", "vad"), [(True, False), (False, True)])
def test_single_head_engines(tmp_path: Path, logits: bool, vad: bool) -> None:
    d = build_tiny_engine(
        tmp_path / "e", labels=("calm", "tense"), logits=logits, vad=vad, window_s=1.0, hop_s=0.25
    )
    m = read_manifest(d)
    assert m.outputs == EngineOutputs(logits=logits, vad=vad)
    assert m.window_s == 1.0 and m.hop_s == 0.25
    res = load_engine(d, intra_op_threads=1).infer(speech_like(12000)[None, :])
    assert (res.logits is not None) == logits and (res.probabilities is not None) == logits
    assert (res.vad is not None) == vad
    if logits:
        assert res.logits is not None and res.logits.shape == (1, 2)
        assert load_engine(d).labels == ("calm", "tense")
    assert check_parity(tiny_model(("calm", "tense"), logits=logits, vad=vad), d, lengths=(9000,)).passed


class _TupleModel(torch.nn.Module):
    """MFCC+deltas front end, returns a (logits, vad) tuple instead of a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.front = MFCC(13, with_deltas=True)
        self.head = torch.nn.Linear(39, 6)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.head(self.front(audio).mean(dim=2))
        return h[:, :3], torch.tanh(h[:, 3:])


def test_export_tuple_model_with_mfcc(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = _TupleModel().eval()
    d = export_engine(model, tmp_path / "mfcc", _manifest())
    report = check_parity(model, d, lengths=(3000, 16000))
    assert report.passed, str(report)


def test_export_picks_heads_from_full_pair(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _TupleModel().eval()
    d = export_engine(model, tmp_path / "vad_only", _manifest(labels=(), outputs=EngineOutputs(False, True)))
    res = load_engine(d, intra_op_threads=1).infer(speech_like(8000)[None, :])
    assert res.logits is None and res.vad is not None
    with torch.no_grad():
        ref = model(torch.from_numpy(speech_like(8000)[None, :]))[1].numpy()
    np.testing.assert_allclose(res.vad, ref, atol=1e-4)


class _ThreeOutputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.front = LogMel(8)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.front(audio).mean(dim=2)
        return f[:, :3], f[:, 3:6], f[:, 6:]


def test_export_wrong_output_count(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="export failed") as err:
        export_engine(_ThreeOutputs().eval(), tmp_path / "bad", _manifest(outputs=EngineOutputs(True, False)))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bad" / "engine.json").exists()


class _BakedBatch(torch.nn.Module):
    """Reshapes with a literal batch of 2: a dynamic batch axis is impossible, export must refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.front = LogMel(8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pooled = self.front(audio).mean(dim=2).reshape(2, 8)
        return self.head(pooled)


def test_export_refuses_baked_batch(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"model\.onnx"):
        export_engine(_BakedBatch().eval(), tmp_path / "baked", _manifest(outputs=EngineOutputs(True, False)))
    assert not (tmp_path / "baked" / "engine.json").exists()


def test_inline_external_data(tmp_path: Path, tiny_engine_dir: Path) -> None:
    proto = onnx.load(str(tiny_engine_dir / "model.onnx"))
    path = tmp_path / "model.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    _inline_external_data(path)
    assert not (tmp_path / "weights.bin").exists()
    back = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in back.graph.initializer)
    onnx.checker.check_model(back)


# --------------------------------------------------------------------------- front end


def _numpy_power(x: np.ndarray, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """Reference: centred (zero-padded) frames, periodic Hann, rfft power -> [F, T]."""
    pad = np.pad(x, (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop]
    window = np.hanning(n_fft + 1)[:-1]
    return (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).T


def test_stft_power_matches_numpy_fft() -> None:
    x = speech_like(5000, seed=4).astype(np.float64)
    got = STFTPower()(torch.from_numpy(x[None, :].astype(np.float32)))[0].double().numpy()
    ref = _numpy_power(x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * ref.max())


def test_logmel_matches_numpy_reference_and_handles_silence() -> None:
    x = speech_like(8000, seed=5)
    got = LogMel(40)(torch.from_numpy(x[None, :]))[0].numpy()
    fb = mel_filterbank(40, 400, SR, 0.0, SR / 2)
    ref = np.log(np.maximum(fb @ _numpy_power(x.astype(np.float64)), 1e-6))
    assert got.shape == (40, 51)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    silent = LogMel(40)(torch.zeros(2, 3000))
    assert torch.isfinite(silent).all()
    assert float(silent.min()) == pytest.approx(np.log(1e-6), rel=1e-5)


def test_mel_filterbank_covers_spectrum() -> None:
    fb = mel_filterbank(64, 512, SR, 0.0, 8000.0)
    assert fb.shape == (64, 257) and (fb >= 0).all()
    assert (fb.sum(axis=1) > 0).all()  # no empty filters
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # centre frequencies increase


def test_mfcc_shapes_and_deltas() -> None:
    x = torch.from_numpy(np.stack([speech_like(16000, seed=s) for s in (1, 2)]))
    plain = MFCC(13)(x)
    full = MFCC(13, with_deltas=True)(x)
    assert plain.shape == (2, 13, 101) and full.shape == (2, 39, 101)
    torch.testing.assert_close(full[:, :13], plain)
    const = MFCC(13, with_deltas=True)(torch.full((1, 8000), 0.1))
    # away from the edges (centre padding + two 5-frame regressions) a stationary signal has ~zero deltas
    assert const[:, 13:, 6:-6].abs().max() < 1e-3
    with pytest.raises(ValueError):
        MFCC(50, n_mels=40)


# --------------------------------------------------------------------------- TensorRT


def _has_gpu_trt() -> bool:
    return probe_trt_host() is not None


def test_build_trt_without_gpu_is_one_clear_error(tiny_engine_copy: Path) -> None:
    if _has_gpu_trt():
        pytest.skip("this host has a GPU and TensorRT; the no-GPU error cannot be exercised")
    before = (tiny_engine_copy / "engine.json").read_text()
    with pytest.raises(TensorRTUnavailable) as err:
        build_plans(tiny_engine_copy)
    assert str(err.value) == "no NVIDIA GPU/TensorRT on this host: build-trt needs one"
    assert isinstance(err.value, EngineError)
    assert (tiny_engine_copy / "engine.json").read_text() == before
    assert not (tiny_engine_copy / "trt").exists()


def test_build_trt_checks_engine_first(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"engine\.json"):
        build_plans(tmp_path)


@pytest.mark.skipif(
    import_tensorrt() is None or import_cudart() is None or probe_trt_host() is None,
    reason="needs an NVIDIA GPU with the tensorrt and cuda-python packages",
)
def test_build_and_run_trt_plan(tiny_engine_copy: Path) -> None:
    plans = build_plans(tiny_engine_copy, max_batch=8, min_s=0.25, opt_s=2.0, max_s=4.0)
    assert plans and all(p.is_file() for p in plans)
    m = json.loads((tiny_engine_copy / "engine.json").read_text())
    assert m["tensorrt"][0]["profile"]["max"] == [8, 64000]
    trt_engine = load_engine(tiny_engine_copy, backend="tensorrt")
    cpu_engine = load_engine(tiny_engine_copy, backend="onnxruntime-cpu")
    assert trt_engine.backend == "tensorrt"
    x = np.stack([speech_like(32000, seed=s) for s in range(11)])  # 11 > max_batch: split in two
    a, b = trt_engine.infer(x), cpu_engine.infer(x)
    assert a.logits is not None and b.logits is not None
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-2)


class _FakeBuilder:
    """Just enough of tensorrt.Builder to record what build_plans asks for."""

    def __init__(self, logger: object) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def create_network(self, flags: int) -> object:
        return types.SimpleNamespace(flags=flags)

    def create_builder_config(self) -> object:
        return types.SimpleNamespace(
            set_memory_pool_limit=lambda *a: None, add_optimization_profile=lambda p: 0
        )

    def create_optimization_profile(self) -> object:
        def set_shape(name: str, lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> None:
            self.shapes[name] = (lo, opt, hi)

        return types.SimpleNamespace(set_shape=set_shape)

    def build_serialized_network(self, network: object, config: object) -> bytes:
        return f"FAKE PLAN {self.shapes}".encode()


def _fake_gpu_modules(monkeypatch: pytest.MonkeyPatch, gpu: str = "NVIDIA H100 80GB HBM3") -> None:
    """Inject fake tensorrt / cuda.bindings.runtime modules: a GPU cannot exist on this host."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0"  # type: ignore[attr-defined]
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})  # type: ignore[attr-defined]
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)  # type: ignore[attr-defined]
    trt.Builder = _FakeBuilder  # type: ignore[attr-defined]
    trt.OnnxParser = lambda net, logger: types.SimpleNamespace(  # type: ignore[attr-defined]
        parse_from_file=lambda path: Path(path).is_file(), num_errors=0
    )
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda blob: None)  # type: ignore[attr-defined]
    props = types.SimpleNamespace(name=gpu.encode() + b"\x00")
    cudart = types.ModuleType("cuda.bindings.runtime")
    cudart.cudaGetDeviceCount = lambda: (0, 2)  # type: ignore[attr-defined]
    cudart.cudaGetDeviceProperties = lambda i: (0, props)  # type: ignore[attr-defined]
    cudart.cudaSetDevice = lambda i: (0,)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


def test_build_plans_bookkeeping_with_fake_gpu(
    tiny_engine_copy: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_gpu_modules(monkeypatch)
    host = probe_trt_host()
    assert host is not None and host.gpu_name == "NVIDIA H100 80GB HBM3" and host.tensorrt_version == "10.9.0"
    model_sha = read_manifest(tiny_engine_copy).sha256["model.onnx"]
    for _ in range(2):  # rebuilding replaces the entry instead of appending a duplicate
        plans = build_plans(tiny_engine_copy, max_batch=16)
    assert plans == [tiny_engine_copy / "trt" / "nvidia-h100-80gb-hbm3-trt10.9.0.plan"]  # 2 GPUs, same model
    m = read_manifest(tiny_engine_copy)
    (entry,) = m.tensorrt
    assert entry.plan == "trt/nvidia-h100-80gb-hbm3-trt10.9.0.plan" and entry.gpu == "NVIDIA H100 80GB HBM3"
    assert entry.profile == {"input": "audio", "min": [1, 8000], "opt": [8, 32000], "max": [16, 128000]}
    assert m.sha256["model.onnx"] == model_sha
    assert m.sha256[entry.plan] == sha256_file(plans[0])
    assert b"(1, 8000), (8, 32000), (16, 128000)" in plans[0].read_bytes()
    with pytest.raises(ValueError, match="max_batch"):
        build_plans(tiny_engine_copy, opt_batch=32, max_batch=16)
    # auto picks the plan, the (fake) runtime cannot open it, so loading falls back to ORT on the CPU
    with caplog.at_level("WARNING"):
        engine = load_engine(tiny_engine_copy, intra_op_threads=1)
    assert engine.backend == "onnxruntime-cpu" and "cannot deserialize" in caplog.text
    with pytest.raises(EngineError, match="cannot deserialize"):
        load_engine(tiny_engine_copy, backend="tensorrt")


def test_parity_tolerance_is_absolute_near_zero_and_relative_for_large_values() -> None:
    from training.export import ParityReport

    def report(abs_diff: float, scaled: float) -> ParityReport:
        return ParityReport({"logits": abs_diff}, 1e-3, [(1, 8000)], max_scaled_diff={"logits": scaled})

    assert report(2e-3, 4e-4).passed  # e.g. 2e-3 on a log-probability of -4
    assert not report(2e-3, 1.5e-3).passed
    assert not report(float("nan"), float("nan")).passed
    assert "tolerance 0.001 x (1 + |torch|)" in str(report(2e-3, 4e-4))
