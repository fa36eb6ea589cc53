"""FileSource on real files written here: many rates, channels, subtypes and containers, and bad files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.messages import AudioChunk, SourceEvent, StreamEnded
from streamer.sources.base import AudioSource, SourceError
from streamer.sources.file import FileSource


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


async def collect(src: AudioSource) -> tuple[dict[str, list[AudioChunk]], dict[str, StreamEnded]]:
    chunks: dict[str, list[AudioChunk]] = {}
    ends: dict[str, StreamEnded] = {}
    async for ev in src:
        if isinstance(ev, AudioChunk):
            assert ev.stream_id not in ends, "chunk after StreamEnded"
            chunks.setdefault(ev.stream_id, []).append(ev)
        else:
            assert ev.stream_id not in ends, "two StreamEnded for one stream"
            ends[ev.stream_id] = ev
    return chunks, ends


def joined(chunks: list[AudioChunk]) -> np.ndarray:
    starts = [c.start_sample for c in chunks]
    assert starts == [0] + [c.end_sample for c in chunks[:-1]], "chunks are not contiguous"
    for c in chunks:
        assert c.samples.dtype == np.float32 and c.samples.ndim == 1
        assert np.isfinite(c.samples).all() and np.abs(c.samples).max() <= 1.0
    return np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)


def peak_hz(x: np.ndarray) -> float:
    seg = x[len(x) // 4 : 3 * len(x) // 4]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    return float(np.argmax(spec) * 16000 / len(seg))


@pytest.mark.parametrize(
    ("rate", "fmt", "subtype", "suffix"),
    [
        (8000, "WAV", "PCM_16", "wav"),
        (22050, "WAV", "PCM_16", "wav"),
        (44100, "WAV", "PCM_24", "wav"),
        (48000, "WAV", "FLOAT", "wav"),
        (44100, "FLAC", "PCM_24", "flac"),
        (22050, "OGG", "VORBIS", "ogg"),
        (48000, "MP3", "MPEG_LAYER_III", "mp3"),
        (16000, "WAV", "PCM_32", "wav"),
    ],
)
async def test_any_rate_and_format_becomes_16k_with_exact_counts(
    tmp_path: Path, rate: int, fmt: str, subtype: str, suffix: str
) -> None:
    seconds = 1.5
    path = tmp_path / f"tone_{rate}.{suffix}"
    sf.write(path, tone(440, rate, seconds), rate, format=fmt, subtype=subtype)
    src = FileSource(path, "t", chunk_ms=40)
    assert src.stream_ids == ["t"]
    chunks, ends = await collect(src)
    x = joined(chunks["t"])
    assert ends["t"].reason == "eof"
    assert ends["t"].total_samples == len(x)
    assert abs(len(x) - seconds * 16000) <= 4
    assert all(len(c.samples) == 640 for c in chunks["t"][:-1])
    assert abs(peak_hz(x) - 440) < 5
    assert 0.4 < np.abs(x[4000:-4000]).max() < 0.6


async def test_16k_pcm16_passes_through_bit_exact(speech_wav: Path) -> None:
    ref, sr = sf.read(speech_wav, dtype="float32")
    assert sr == 16000
    chunks, ends = await collect(FileSource(speech_wav, "speech", chunk_ms=20))
    x = joined(chunks["speech"])
    np.testing.assert_array_equal(x, ref)
    assert ends["speech"].total_samples == len(ref)


async def test_stereo_split_gives_two_streams_with_the_right_channel(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rate = 44100
    stereo = np.stack([tone(300, rate, 1.0), tone(1200, rate, 1.0, amp=0.3)], axis=1)
    sf.write(path, stereo, rate, subtype="PCM_16")
    src = FileSource(path, "call", split_channels=True, chunk_ms=50)
    assert src.stream_ids == ["call.ch0", "call.ch1"]
    chunks, ends = await collect(src)
    left, right = joined(chunks["call.ch0"]), joined(chunks["call.ch1"])
    assert set(ends) == {"call.ch0", "call.ch1"}
    assert len(left) == len(right) == ends["call.ch0"].total_samples == ends["call.ch1"].total_samples
    assert abs(peak_hz(left) - 300) < 5 and abs(peak_hz(right) - 1200) < 5
    assert np.abs(left[4000:-4000]).max() == pytest.approx(0.5, abs=0.02)
    assert np.abs(right[4000:-4000]).max() == pytest.approx(0.3, abs=0.02)

    mixed, _ = await collect(FileSource(path, "mix"))
    m = joined(mixed["mix"])
    np.testing.assert_allclose(m, (left + right) / 2, atol=2e-3)


async def test_nan_and_inf_samples_are_repaired_and_counted(tmp_path: Path) -> None:
    x = tone(440, 16000, 0.5)
    x[100] = np.nan
    x[200] = np.inf
    x[300] = -np.inf
    x[400] = 4.0
    path = tmp_path / "bad.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    src = FileSource(path, "bad")
    chunks, ends = await collect(src)
    y = joined(chunks["bad"])
    assert src.stats["samples_repaired"] == 4
    assert y[100] == 0.0 and y[200] == 0.0 and y[300] == 0.0 and y[400] == 1.0
    assert ends["bad"].total_samples == 8000


async def test_valid_file_with_no_frames_just_ends(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    chunks, ends = await collect(FileSource(path, "z"))
    assert chunks == {}
    assert ends["z"] == StreamEnded("z", 0, "eof")


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        ("missing.wav", None, "not found"),
        ("empty.wav", b"", "empty"),
        ("corrupt.wav", os.urandom(4096), "cannot decode"),
        ("header.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64), "cannot decode"),
    ],
)
def test_bad_files_raise_one_line_source_error(
    tmp_path: Path, name: str, make: bytes | None, match: str
) -> None:
    path = tmp_path / name
    if make is not None:
        path.write_bytes(make)
    with pytest.raises(SourceError, match=match) as info:
        FileSource(path, "x")
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_directory_is_not_an_audio_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="directory"):
        FileSource(tmp_path, "x")


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix"),
    [
        ("WAV", "PCM_16", "wav"),
        ("FLAC", "PCM_16", "flac"),
        ("OGG", "VORBIS", "ogg"),
        ("MP3", "MPEG_LAYER_III", "mp3"),
    ],
)
async def test_file_truncated_while_reading_ends_cleanly(
    tmp_path: Path, fmt: str, subtype: str, suffix: str
) -> None:
    path = tmp_path / f"long.{suffix}"
    noise = np.random.default_rng(0).uniform(-0.2, 0.2, 5 * 16000).astype(np.float32)
    sf.write(path, noise, 16000, format=fmt, subtype=subtype)
    src = FileSource(path, "tr", chunk_ms=100)
    events: list[SourceEvent] = []
    async for ev in src:
        events.append(ev)
        if len(events) == 1:
            os.truncate(path, path.stat().st_size // 3)  # the file shrinks under the reader
    end = events[-1]
    assert isinstance(end, StreamEnded)
    assert end.reason == "truncated" or end.reason.startswith("error: ")
    assert "\n" not in end.reason
    assert 1600 <= end.total_samples < 5 * 16000
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert chunks[-1].end_sample == end.total_samples
    assert sum(isinstance(e, StreamEnded) for e in events) == 1


async def test_realtime_pacing_paces_by_sample_count(tmp_path: Path) -> None:
    path = tmp_path / "rt.wav"
    sf.write(path, tone(440, 48000, 1.0), 48000)
    src = FileSource(path, "rt", realtime=True, chunk_ms=100)
    t0 = time.monotonic()
    chunks, ends = await collect(src)
    elapsed = time.monotonic() - t0
    assert ends["rt"].total_samples == 16000
    assert elapsed >= 0.8  # loose: paced means roughly the file's duration, never a burst
    walls = [c.wall_time for c in chunks["rt"]]
    assert walls[5] - walls[0] == pytest.approx(0.5, abs=1e-6)


async def test_not_realtime_reads_faster_than_realtime(tmp_path: Path) -> None:
    path = tmp_path / "fast.wav"
    sf.write(path, tone(440, 16000, 20.0), 16000)
    t0 = time.monotonic()
    _, ends = await collect(FileSource(path, "f"))
    assert ends["f"].total_samples == 320000
    assert time.monotonic() - t0 < 20.0


async def test_loop_continues_sample_counts_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, tone(440, 22050, 0.3), 22050)
    src = FileSource(path, "loop", loop=True, chunk_ms=50)
    got: list[AudioChunk] = []
    async for ev in src:
        assert isinstance(ev, AudioChunk)
        got.append(ev)
        if ev.end_sample >= 16000:
            break
    await src.aclose()
    joined(got)
    assert src.stats["loops"] >= 3
    await src.aclose()  # idempotent


async def test_aclose_before_iteration_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(440, 16000, 0.2), 16000)
    src = FileSource(path, "a")
    await src.aclose()
    chunks, ends = await collect(src)
    assert chunks == {} and ends["a"].reason == "closed"


async def test_cancelling_a_pending_read_then_aclose_is_safe(tmp_path: Path) -> None:
    """The daemon cancels ``anext`` on shutdown, possibly while a read runs in its worker thread."""
    import asyncio
    import contextlib

    path = tmp_path / "big.wav"
    sf.write(path, tone(440, 48000, 10.0), 48000)
    for delay in (0, 1, 2, 5):
        src = FileSource(path, "c", chunk_ms=20)
        it = aiter(src)
        first = await anext(it)
        assert isinstance(first, AudioChunk)
        task = asyncio.ensure_future(anext(it))
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await task
        await src.aclose()
        assert src.closed
