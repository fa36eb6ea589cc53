"""Sample conversion, repair, channel handling and streaming resampling to the pipeline rate.

Every source funnels its audio through these helpers so that all streams reach the segmenter as
clean mono float32 at 16 kHz whose timestamps come from output sample counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from streamer.messages import SAMPLE_RATE, AudioChunk, FloatArray, StreamEnded

SampleFormat = Literal["s16le", "s24le", "s32le", "f32le"]
SAMPLE_FORMATS: tuple[SampleFormat, ...] = ("s16le", "s24le", "s32le", "f32le")
BYTES_PER_SAMPLE: dict[str, int] = {"s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4}


def sanitize(x: npt.NDArray[np.floating]) -> tuple[FloatArray, int]:
    """NaN/inf → 0 and clip to [-1, 1]; returns float32 samples and how many were repaired.

    Garbage input (a broken client, a corrupt float file) must never reach the models as NaN.
    """
    y = np.asarray(x, dtype=np.float32)
    finite = np.isfinite(y)
    n_bad = int(y.size - np.count_nonzero(finite))
    n_clip = int(np.count_nonzero(np.abs(np.where(finite, y, 0.0)) > 1.0))
    if n_bad == 0 and n_clip == 0:
        return y, 0
    y = np.where(finite, y, np.float32(0.0)).astype(np.float32, copy=False)
    np.clip(y, -1.0, 1.0, out=y)
    return y, n_bad + n_clip


def bytes_to_float(
    data: bytes | bytearray | memoryview, fmt: str, channels: int = 1
) -> tuple[FloatArray, int]:
    """Raw little-endian PCM → float32 frames [n, channels] (plus repaired count).

    ``data`` must hold whole frames; :class:`PcmDecoder` reassembles partial frames across reads.
    """
    if fmt not in BYTES_PER_SAMPLE:
        raise ValueError(f"unknown sample format {fmt!r} (expected one of {', '.join(SAMPLE_FORMATS)})")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    width = BYTES_PER_SAMPLE[fmt]
    if len(data) % (width * channels):
        raise ValueError(f"{len(data)} bytes is not a whole number of {fmt} frames with {channels} channels")
    buf = np.frombuffer(data, dtype=np.uint8)
    if fmt == "s16le":
        y = np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    elif fmt == "s32le":
        y = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif fmt == "s24le":
        b = buf.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        y = v.astype(np.float32) / np.float32(8388608.0)
    else:
        y = np.frombuffer(data, dtype="<f4").astype(np.float32)
    y, repaired = sanitize(y)
    return y.reshape(-1, channels), repaired


def float_to_bytes(x: npt.NDArray[np.floating], fmt: str) -> bytes:
    """Inverse of :func:`bytes_to_float` (interleaved frames in, raw PCM out); used by tools and tests."""
    y = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64).reshape(-1)), -1.0, 1.0)
    if fmt == "s16le":
        return bytes(np.round(y * 32767.0).astype("<i2").tobytes())
    if fmt == "s32le":
        return bytes(np.round(y * 2147483647.0).astype("<i4").tobytes())
    if fmt == "s24le":
        v = np.round(y * 8388607.0).astype(np.int32) & 0xFFFFFF
        b = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8)
        return bytes(b.tobytes())
    if fmt == "f32le":
        return bytes(np.asarray(x, dtype="<f4").reshape(-1).tobytes())
    raise ValueError(f"unknown sample format {fmt!r}")


def downmix(frames: npt.NDArray[np.floating]) -> FloatArray:
    """[n, channels] → mono [n] by averaging (a 1-D input is returned as float32)."""
    a = np.asarray(frames, dtype=np.float32)
    if a.ndim == 1:
        return a
    if a.shape[1] == 1:
        return np.ascontiguousarray(a[:, 0])
    return a.mean(axis=1, dtype=np.float32)


def split(frames: npt.NDArray[np.floating]) -> list[FloatArray]:
    """[n, channels] → one contiguous mono array per channel (a stereo call is two speakers)."""
    a = np.asarray(frames, dtype=np.float32)
    if a.ndim == 1:
        return [a]
    return [np.ascontiguousarray(a[:, c]) for c in range(a.shape[1])]


class PcmDecoder:
    """Byte stream → float32 frames, keeping partial frames across reads (TCP/pipe reads split anywhere)."""

    def __init__(self, fmt: str, channels: int) -> None:
        if fmt not in BYTES_PER_SAMPLE:
            raise ValueError(f"unknown sample format {fmt!r} (expected one of {', '.join(SAMPLE_FORMATS)})")
        self.fmt = fmt
        self.channels = channels
        self.frame_bytes = BYTES_PER_SAMPLE[fmt] * channels
        self._pending = bytearray()
        self.repaired = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes) -> FloatArray:
        """Decode every whole frame available so far; returns [n, channels]."""
        self._pending += data
        n = len(self._pending) // self.frame_bytes * self.frame_bytes
        if n == 0:
            return np.zeros((0, self.channels), dtype=np.float32)
        whole = bytes(self._pending[:n])
        del self._pending[:n]
        frames, repaired = bytes_to_float(whole, self.fmt, self.channels)
        self.repaired += repaired
        return frames

    def drop_partial(self) -> int:
        """Discard an incomplete trailing frame (sender vanished mid-frame); returns bytes dropped."""
        n = len(self._pending)
        self._pending.clear()
        return n


class StreamResampler:
    """Streaming resampler (soxr) from any rate to 16 kHz, keeping exact output sample counts.

    Multi-channel input is resampled together so split channels stay sample-aligned.
    """

    def __init__(self, in_rate: float, channels: int = 1, out_rate: int = SAMPLE_RATE, quality: str = "HQ"):
        if in_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {in_rate}")
        self.in_rate = float(in_rate)
        self.out_rate = out_rate
        self.channels = channels
        self.samples_in = 0
        self.samples_out = 0
        self._passthrough = self.in_rate == float(out_rate)
        self._rs = (
            None
            if self._passthrough
            else soxr.ResampleStream(self.in_rate, out_rate, channels, "float32", quality)
        )

    def process(self, frames: npt.NDArray[np.floating], last: bool = False) -> FloatArray:
        """Feed [n, channels] (or [n] for mono) frames; returns the output available so far."""
        x = np.ascontiguousarray(frames, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        self.samples_in += x.shape[0]
        if self._rs is None:
            y = x
        else:
            y = np.asarray(self._rs.resample_chunk(x, last=last), dtype=np.float32).reshape(-1, self.channels)
            # The resampler can overshoot [-1, 1] slightly near full-scale input (Gibbs ripple).
            np.clip(y, -1.0, 1.0, out=y)
        self.samples_out += y.shape[0]
        return y

    def flush(self) -> FloatArray:
        """Drain the resampler's delay line at the end of a stream."""
        return self.process(np.zeros((0, self.channels), dtype=np.float32), last=True)


@dataclass(slots=True)
class _Lane:
    stream_id: str
    buf: list[FloatArray] = field(default_factory=list)
    buffered: int = 0
    emitted: int = 0


class ChunkAssembler:
    """Resampled frames → fixed-size ``AudioChunk`` per stream id (one id, or one per channel when split).

    ``start_sample`` is the count of 16 kHz samples already emitted; ``wall_time`` is extrapolated from
    the latest anchor (wall time of a known input frame) by sample count, so it never drifts by jitter.
    """

    def __init__(
        self,
        stream_id: str,
        in_rate: float,
        channels: int,
        *,
        split_channels: bool = False,
        chunk_ms: float = 100.0,
    ) -> None:
        if not 1.0 <= chunk_ms <= 10_000.0:
            raise ValueError(f"chunk_ms must be within [1, 10000], got {chunk_ms}")
        self.split_channels = split_channels and channels > 1
        self.channels = channels
        self.chunk_samples = max(1, round(SAMPLE_RATE * chunk_ms / 1000.0))
        ids = [f"{stream_id}.ch{c}" for c in range(channels)] if self.split_channels else [stream_id]
        self._lanes = [_Lane(i) for i in ids]
        self._resampler = StreamResampler(in_rate, channels if self.split_channels else 1)
        self._anchor_wall: float | None = None
        self._anchor_out = 0.0
        self.repaired = 0
        self.ended = False

    @property
    def stream_ids(self) -> list[str]:
        return [lane.stream_id for lane in self._lanes]

    @property
    def in_rate(self) -> float:
        return self._resampler.in_rate

    def anchor(self, wall_time: float) -> None:
        """Declare that the next input frame was captured at ``wall_time`` (unix seconds)."""
        self._anchor_wall = wall_time
        self._anchor_out = self._resampler.samples_in * SAMPLE_RATE / self._resampler.in_rate

    def wall_time_at(self, sample: int) -> float:
        if self._anchor_wall is None:
            self.anchor(time.time())
        assert self._anchor_wall is not None
        return self._anchor_wall + (sample - self._anchor_out) / SAMPLE_RATE

    def feed(self, frames: npt.NDArray[np.floating], wall_time: float | None = None) -> list[AudioChunk]:
        """Add input frames [n, channels] (any float range; repaired here) and return complete chunks."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        x, repaired = sanitize(x)
        self.repaired += repaired
        if wall_time is not None or self._anchor_wall is None:
            self.anchor(time.time() if wall_time is None else wall_time)
        if not self.split_channels and self.channels > 1:
            x = downmix(x).reshape(-1, 1)
        return self._push(self._resampler.process(x), final=False)

    def finish(self, reason: str = "eof") -> list[AudioChunk | StreamEnded]:
        """Flush the resampler and the partial chunks, then one ``StreamEnded`` per stream id."""
        if self.ended:
            return []
        self.ended = True
        out: list[AudioChunk | StreamEnded] = list(self._push(self._resampler.flush(), final=True))
        out.extend(StreamEnded(lane.stream_id, lane.emitted, reason) for lane in self._lanes)
        return out

    def _push(self, y: FloatArray, *, final: bool) -> list[AudioChunk]:
        chunks: list[AudioChunk] = []
        for c, lane in enumerate(self._lanes):
            if len(y):
                lane.buf.append(np.ascontiguousarray(y[:, c]))
                lane.buffered += len(y)
            if lane.buffered < self.chunk_samples and not (final and lane.buffered):
                continue
            data = np.concatenate(lane.buf) if len(lane.buf) > 1 else lane.buf[0]
            n_whole = len(data) if final else len(data) // self.chunk_samples * self.chunk_samples
            for i in range(0, n_whole, self.chunk_samples):
                piece = data[i : min(i + self.chunk_samples, n_whole)].copy()
                chunks.append(
                    AudioChunk(lane.stream_id, piece, lane.emitted, self.wall_time_at(lane.emitted))
                )
                lane.emitted += len(piece)
            rest = data[n_whole:]
            lane.buf = [rest] if len(rest) else []
            lane.buffered = len(rest)
        return chunks
