"""Sample conversion, repair, channel handling, streaming resampling and chunk assembly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.audio import (
    ChunkAssembler,
    PcmDecoder,
    StreamResampler,
    bytes_to_float,
    downmix,
    float_to_bytes,
    sanitize,
    split,
)
from streamer.messages import AudioChunk, StreamEnded


def test_sanitize_repairs_and_counts() -> None:
    x = np.array([0.5, np.nan, np.inf, -np.inf, 1.5, -2.0, -1.0, 1.0], dtype=np.float32)
    y, n = sanitize(x)
    assert n == 5
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0.5, 0.0, 0.0, 0.0, 1.0, -1.0, -1.0, 1.0])
    clean = np.linspace(-1, 1, 11, dtype=np.float32)
    y2, n2 = sanitize(clean)
    assert n2 == 0
    np.testing.assert_array_equal(y2, clean)


def test_s16_known_values() -> None:
    raw = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    y, rep = bytes_to_float(raw, "s16le")
    assert rep == 0
    np.testing.assert_allclose(y[:, 0], [0.0, 0.5, -1.0, 32767 / 32768])


def test_s24_packed_known_values() -> None:
    # 0x400000 = +0.5, 0x800000 = -1.0, 0xFFFFFF = -1 LSB, 0x7FFFFF = max
    raw = bytes([0, 0, 0x40, 0, 0, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
    y, _ = bytes_to_float(raw, "s24le")
    np.testing.assert_allclose(y[:, 0], [0.5, -1.0, -1 / 8388608, 8388607 / 8388608])


def test_s32_and_f32_known_values() -> None:
    y, _ = bytes_to_float(np.array([1 << 30, -(1 << 31)], dtype="<i4").tobytes(), "s32le")
    np.testing.assert_allclose(y[:, 0], [0.5, -1.0])
    f = np.array([0.25, np.nan, 3.0, -np.inf], dtype="<f4").tobytes()
    y, rep = bytes_to_float(f, "f32le")
    assert rep == 3
    np.testing.assert_array_equal(y[:, 0], [0.25, 0.0, 1.0, 0.0])


@settings(max_examples=40, deadline=None)
@given(
    fmt=st.sampled_from(["s16le", "s24le", "s32le", "f32le"]),
    channels=st.integers(1, 4),
    data=st.lists(st.floats(-1.0, 1.0, width=32), min_size=0, max_size=64),
)
def test_round_trip_all_formats(fmt: str, channels: int, data: list[float]) -> None:
    n = len(data) // channels * channels
    x = np.array(data[:n], dtype=np.float32)
    y, rep = bytes_to_float(float_to_bytes(x, fmt), fmt, channels)
    assert rep == 0
    assert y.shape == (n // channels, channels)
    tol = {"s16le": 2 / 32767, "s24le": 2 / 8388607, "s32le": 1e-6, "f32le": 0.0}[fmt]  # scale + rounding
    np.testing.assert_allclose(y.reshape(-1), x, atol=tol + 1e-7)


def test_bytes_to_float_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="whole number"):
        bytes_to_float(b"\x00\x01\x02", "s16le")
    with pytest.raises(ValueError, match="unknown sample format"):
        bytes_to_float(b"", "u8")


@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from(["s16le", "s24le", "f32le"]), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_decoder_reassembles_frames_split_anywhere(fmt: str, cuts: list[int]) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(100, 2)).astype(np.float32)
    raw = float_to_bytes(x, fmt) + b"\x01"  # a trailing partial frame
    dec = PcmDecoder(fmt, 2)
    pieces, pos = [], 0
    for c in [*sorted(set(cuts)), len(raw)]:
        pieces.append(dec.feed(raw[pos:c]))
        pos = max(pos, c)
    y = np.concatenate(pieces)
    assert y.shape == (100, 2)
    np.testing.assert_allclose(y, bytes_to_float(raw[:-1], fmt, 2)[0])
    assert dec.drop_partial() == 1
    assert dec.pending_bytes == 0


def test_downmix_and_split() -> None:
    x = np.stack([np.full(5, 0.2), np.full(5, -0.6)], axis=1).astype(np.float32)
    np.testing.assert_allclose(downmix(x), np.full(5, -0.2), atol=1e-7)
    left, right = split(x)
    assert left.flags.c_contiguous and right.flags.c_contiguous
    np.testing.assert_allclose(left, 0.2)
    np.testing.assert_allclose(right, -0.6)
    assert downmix(x[:, 0]).shape == (5,)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 16000])
def test_streaming_resampler_counts_are_exact(rate: int) -> None:
    rng = np.random.default_rng(rate)
    n = rate * 3 + 7
    x = rng.uniform(-0.5, 0.5, size=(n, 2)).astype(np.float32)
    rs = StreamResampler(rate, channels=2)
    total = 0
    sizes = rng.integers(1, 2000, size=10_000)
    pos = 0
    for s in sizes:
        if pos >= n:
            break
        total += len(rs.process(x[pos : pos + s]))
        pos += int(s)
    total += len(rs.flush())
    assert rs.samples_in == n
    assert rs.samples_out == total
    assert abs(total - n * 16000 / rate) <= 2


def test_resampler_preserves_a_tone() -> None:
    rate = 44100
    t = np.arange(rate * 2) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rs = StreamResampler(rate)
    y = np.concatenate([rs.process(x[i : i + 1000]) for i in range(0, len(x), 1000)] + [rs.flush()])[:, 0]
    spec = np.abs(np.fft.rfft(y[4000:28000]))
    peak_hz = np.argmax(spec) * 16000 / 24000
    assert abs(peak_hz - 440) < 2
    assert 0.45 < np.max(np.abs(y[4000:28000])) < 0.55


def test_chunk_assembler_split_chunks_and_end() -> None:
    rate = 48000
    left = np.full(rate, 0.25, dtype=np.float32)
    right = np.full(rate, -0.25, dtype=np.float32)
    asm = ChunkAssembler("call", rate, 2, split_channels=True, chunk_ms=20)
    assert asm.stream_ids == ["call.ch0", "call.ch1"]
    events: list[AudioChunk | StreamEnded] = []
    frames = np.stack([left, right], axis=1)
    for i in range(0, rate, 1234):
        events += asm.feed(frames[i : i + 1234], wall_time=1000.0 if i == 0 else None)
    events += asm.finish()
    assert asm.finish() == []
    for sid, level in (("call.ch0", 0.25), ("call.ch1", -0.25)):
        chunks = [e for e in events if isinstance(e, AudioChunk) and e.stream_id == sid]
        ends = [e for e in events if isinstance(e, StreamEnded) and e.stream_id == sid]
        assert len(ends) == 1 and ends[0].reason == "eof"
        assert all(len(c.samples) == 320 for c in chunks[:-1])
        assert [c.start_sample for c in chunks] == [i * 320 for i in range(len(chunks))]
        assert ends[0].total_samples == chunks[-1].end_sample == 16000
        mid = np.concatenate([c.samples for c in chunks])[1000:15000]
        np.testing.assert_allclose(mid, level, atol=1e-3)
        # wall time follows the sample count from the anchor, not the feed cadence
        assert chunks[10].wall_time == pytest.approx(1000.0 + 10 * 0.02)


def test_chunk_assembler_downmixes_and_repairs() -> None:
    asm = ChunkAssembler("s", 16000, 2, chunk_ms=100)
    x = np.zeros((1600, 2), dtype=np.float32)
    x[:, 0] = 0.5
    x[5, 1] = np.nan
    x[6, 1] = 7.0
    (chunk,) = asm.feed(x, wall_time=5.0)
    assert chunk.stream_id == "s" and chunk.samples.shape == (1600,)
    assert asm.repaired == 2
    assert chunk.samples[0] == pytest.approx(0.25)
    assert chunk.samples[6] == pytest.approx(0.75)
    assert np.isfinite(chunk.samples).all()


def test_chunk_assembler_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        ChunkAssembler("s", 16000, 1, chunk_ms=0)
