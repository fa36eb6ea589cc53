"""engines/: loading, verification, inference, padding, backend selection on real tiny engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines import (
    EngineError,
    default_engine_path,
    load_engine,
    sha256_file,
    softmax,
)
from engines.backends import ORT_CPU

SR = 16_000
REPO = Path(__file__).resolve().parents[1]


def _signal(batch: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    rows = [
        0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        + 0.02 * rng.standard_normal(n)
        for i in range(batch)
    ]
    return np.stack(rows).astype(np.float32)


def _rewrite_manifest(engine_dir: Path, **changes: object) -> None:
    path = engine_dir / "engine.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _assert_one_line_naming(err: pytest.ExceptionInfo[EngineError], path: Path) -> None:
    msg = str(err.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg


# --------------------------------------------------------------------------- loading and inference


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("seconds", [0.3, 0.5, 2.0, 3.7, 10.0])
def test_infer_shapes_and_ranges(tiny_engine_dir: Path, batch: int, seconds: float) -> None:
    engine = load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1)
    x = _signal(batch, round(seconds * SR))
    res = engine.infer(x)
    assert res.logits is not None and res.probabilities is not None and res.vad is not None
    assert res.logits.shape == (batch, 4) and res.logits.dtype == np.float32
    assert res.vad.shape == (batch, 3)
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(res.vad >= -1.0) and np.all(res.vad <= 1.0)
    assert np.isfinite(res.logits).all()


def test_rows_are_independent_and_deterministic(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, intra_op_threads=1)
    x = _signal(5, SR)
    batched = engine.infer(x)
    single = engine.infer(x[2:3])
    assert batched.logits is not None and single.logits is not None
    np.testing.assert_allclose(batched.logits[2], single.logits[0], atol=1e-5)
    again = engine.infer(x)
    assert again.logits is not None
    np.testing.assert_array_equal(batched.logits, again.logits)
    # different rows really are different inputs, so the outputs must differ too
    assert not np.allclose(batched.logits[0], batched.logits[4])


def test_infer_real_speech(tiny_engine_dir: Path, speech_wav: Path) -> None:
    audio, sr = sf.read(speech_wav, dtype="float32")
    assert sr == SR
    engine = load_engine(tiny_engine_dir, intra_op_threads=1)
    windows = np.stack([audio[i : i + 2 * SR] for i in range(0, 3 * SR, SR // 2)])
    res = engine.infer(windows)
    assert res.probabilities is not None and res.probabilities.shape == (len(windows), 4)
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_engine_metadata(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, intra_op_threads=1, inter_op_threads=1)
    assert engine.labels == ("neutral", "happy", "sad", "angry")
    assert engine.backend == "onnxruntime-cpu"
    assert engine.providers[0] == ORT_CPU
    assert engine.manifest.window_samples == 2 * SR
    assert "tiny-test" in repr(engine)


def test_infer_rejects_bad_input(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, intra_op_threads=1)
    with pytest.raises(ValueError, match="shape"):
        engine.infer(np.zeros(16000, dtype=np.float32))
    with pytest.raises(ValueError, match="dtype int16"):
        engine.infer(np.zeros((1, 16000), dtype=np.int16))
    with pytest.raises(ValueError, match="NaN"):
        engine.infer(np.full((1, 16000), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="zero samples"):
        engine.infer(np.zeros((2, 0), dtype=np.float32))
    with pytest.raises(TypeError):
        engine.infer([[0.0] * 100])  # type: ignore[arg-type]


def test_infer_accepts_float64_and_non_contiguous(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, intra_op_threads=1)
    x = _signal(2, SR)
    ref = engine.infer(x).logits
    wide = np.asfortranarray(x.astype(np.float64))
    got = engine.infer(wide).logits
    assert ref is not None and got is not None
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_empty_batch(tiny_engine_dir: Path) -> None:
    engine = load_engine(tiny_engine_dir, intra_op_threads=1)
    res = engine.infer(np.zeros((0, 8000), dtype=np.float32))
    assert res.logits is not None and res.logits.shape == (0, 4)
    assert res.vad is not None and res.vad.shape == (0, 3)


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)


def test_engine_path_never_imports_torch(tiny_engine_dir: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from engines import load_engine\n"
        f"e = load_engine({str(tiny_engine_dir)!r}, intra_op_threads=1)\n"
        "e.infer(np.zeros((1, 8000), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'engines imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


# --------------------------------------------------------------------------- padding policy


@pytest.mark.parametrize("policy", ["repeat", "zeros"])
def test_pad_to_min(tiny_engine_copy: Path, policy: str) -> None:
    _rewrite_manifest(tiny_engine_copy, padding=policy)
    engine = load_engine(tiny_engine_copy, intra_op_threads=1)
    short = np.arange(1, 3001, dtype=np.float32) / 3000.0
    padded = engine.pad_to_min(short)
    assert padded.shape == (engine.manifest.min_samples,) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[:3000], short)
    if policy == "repeat":
        np.testing.assert_array_equal(padded[3000:6000], short)
        assert padded[-1] == short[(engine.manifest.min_samples - 1) % 3000]
    else:
        assert not padded[3000:].any()
    long = np.ones(20000, dtype=np.float64)
    assert engine.pad_to_min(long).shape == (20000,)
    assert engine.pad_to_min(short, target=7000).shape == (7000,)
    assert not engine.pad_to_min(np.zeros(0, dtype=np.float32)).any()
    res = engine.infer(padded[None, :])
    assert res.logits is not None and res.logits.shape == (1, 4)


# --------------------------------------------------------------------------- corrupt engines


def _onnx_with_rank3_input(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["b", "c", "n"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "c"])
    vad = helper.make_tensor_value_info("vad", TensorProto.FLOAT, ["b", "c"])
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["logits"], keepdims=0, axes=[2]),
        helper.make_node("Identity", ["logits"], ["vad"]),
    ]
    graph = helper.make_graph(nodes, "rank3", [x], [logits, vad])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _refresh_checksum(engine_dir: Path) -> None:
    _rewrite_manifest(engine_dir, sha256={"model.onnx": sha256_file(engine_dir / "model.onnx")})


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(EngineError, match="not found") as err:
        load_engine(missing)
    _assert_one_line_naming(err, missing)


def test_path_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x")
    with pytest.raises(EngineError, match="not a directory") as err:
        load_engine(f)
    _assert_one_line_naming(err, f)


def test_missing_model(tiny_engine_copy: Path) -> None:
    (tiny_engine_copy / "model.onnx").unlink()
    with pytest.raises(EngineError, match="not found") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "model.onnx")


def test_missing_manifest(tiny_engine_copy: Path) -> None:
    (tiny_engine_copy / "engine.json").unlink()
    with pytest.raises(EngineError, match="manifest not found") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "engine.json")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\xff\xfe"])
def test_invalid_json(tiny_engine_copy: Path, text: str) -> None:
    (tiny_engine_copy / "engine.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(EngineError) as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "engine.json")


def test_checksum_mismatch(tiny_engine_copy: Path) -> None:
    model = tiny_engine_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="checksum mismatch") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, model)


def test_corrupt_onnx_bytes(tiny_engine_copy: Path) -> None:
    model = tiny_engine_copy / "model.onnx"
    model.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 50)
    _refresh_checksum(tiny_engine_copy)
    with pytest.raises(EngineError, match="cannot load") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, model)


def test_truncated_onnx(tiny_engine_copy: Path) -> None:
    model = tiny_engine_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:5000])
    _refresh_checksum(tiny_engine_copy)
    with pytest.raises(EngineError) as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, model)


def test_wrong_input_rank(tiny_engine_copy: Path) -> None:
    _onnx_with_rank3_input(tiny_engine_copy / "model.onnx")
    _refresh_checksum(tiny_engine_copy)
    with pytest.raises(EngineError, match="rank 3") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "model.onnx")


def test_unknown_schema_version(tiny_engine_copy: Path) -> None:
    _rewrite_manifest(tiny_engine_copy, schema_version=99)
    with pytest.raises(EngineError, match="schema_version 99") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "engine.json")


def test_missing_outputs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.tiny_engine import build_tiny_engine

    d = build_tiny_engine(tmp_path / "logits_only", vad=False)
    _rewrite_manifest(d, outputs={"logits": True, "vad": True})
    with pytest.raises(EngineError, match=r"missing outputs \['vad'\]") as err:
        load_engine(d)
    _assert_one_line_naming(err, d / "model.onnx")


def test_label_count_mismatch(tiny_engine_copy: Path) -> None:
    _rewrite_manifest(tiny_engine_copy, labels=["a", "b", "c"])
    with pytest.raises(EngineError, match="width 4") as err:
        load_engine(tiny_engine_copy)
    _assert_one_line_naming(err, tiny_engine_copy / "model.onnx")


def test_default_engine_path() -> None:
    assert default_engine_path() == REPO / "engines" / "default"
    if (default_engine_path() / "engine.json").exists():
        pytest.skip("a default engine is bundled; the missing-default message cannot be exercised")
    with pytest.raises(EngineError, match="no default engine") as err:
        load_engine()
    _assert_one_line_naming(err, default_engine_path())
