"""Microphone input through PyAudio/PortAudio (optional extra ``.[mic]``, imported lazily).

PortAudio calls back on its own thread; the callback only copies bytes into a bounded ring buffer
(dropping the oldest, counted, never blocking the audio thread) and wakes the event loop, which does
all conversion. A lost device ends the stream with reason "device-lost"; ``reopen=True`` keeps
retrying with exponential backoff and starts the stream again (same id, samples from 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from streamer.audio import ChunkAssembler, bytes_to_float
from streamer.messages import SourceEvent
from streamer.sources.base import SourceError

log = logging.getLogger(__name__)

_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """An input-capable audio device as PortAudio reports it (for ``emotrack devices``)."""

    index: int
    name: str
    max_input_channels: int
    default_rate: float
    is_default: bool = False


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise SourceError("microphone input needs PyAudio: pip install 'emotrack[mic]'") from None
    return pyaudio


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence ALSA/JACK probing chatter that PortAudio's init prints on fd 2 (not Python errors)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _open_pyaudio() -> Any:
    pyaudio = _pyaudio()
    with _quiet_stderr():
        try:
            return pyaudio.PyAudio()
        except Exception as exc:
            raise SourceError(f"cannot initialise PortAudio: {exc}") from None


def _devices(pa: Any) -> list[DeviceInfo]:
    try:
        default = int(pa.get_default_input_device_info()["index"])
    except (OSError, ValueError, KeyError):
        default = -1
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        if int(d.get("maxInputChannels", 0)) > 0:
            out.append(
                DeviceInfo(
                    i, str(d["name"]), int(d["maxInputChannels"]), float(d["defaultSampleRate"]), i == default
                )
            )
    return out


def list_devices() -> list[DeviceInfo]:
    """Input-capable devices (index, name, max input channels, default rate)."""
    pa = _open_pyaudio()
    try:
        return _devices(pa)
    finally:
        pa.terminate()


def resolve_device(devices: list[DeviceInfo], device: str | int | None) -> DeviceInfo:
    """Pick a device by index, exact name, or case-insensitive substring; None = the default input."""
    if device is None or device == "":
        for d in devices:
            if d.is_default:
                return d
        if devices:
            return devices[0]
        raise SourceError("no input device found (see emotrack devices)")
    if isinstance(device, int) or device.strip().isdigit():
        idx = int(device)
        for d in devices:
            if d.index == idx:
                return d
        raise SourceError(f"no input device with index {idx} (see emotrack devices)")
    want = device.strip().lower()
    exact = [d for d in devices if d.name.lower() == want]
    if exact:
        return exact[0]
    partial = [d for d in devices if want in d.name.lower()]
    if partial:
        return partial[0]
    raise SourceError(f"no input device matching {device!r} (see emotrack devices)")


class _Ring:
    """Bounded byte-block ring filled by the PortAudio thread; drop-oldest, counted in frames."""

    def __init__(self, capacity_frames: int, frame_bytes: int) -> None:
        self.capacity = capacity_frames
        self.frame_bytes = frame_bytes
        self._blocks: deque[bytes] = deque()
        self._frames = 0
        self._lock = threading.Lock()
        self.dropped_frames = 0
        self.drops_since_take = 0
        self.last_write = time.monotonic()

    def put(self, data: bytes) -> None:
        n = len(data) // self.frame_bytes
        with self._lock:
            self._blocks.append(data)
            self._frames += n
            while self._frames > self.capacity and len(self._blocks) > 1:
                old = self._blocks.popleft()
                k = len(old) // self.frame_bytes
                self._frames -= k
                self.dropped_frames += k
                self.drops_since_take += k
            self.last_write = time.monotonic()

    def take(self) -> tuple[bytes, int]:
        """Everything buffered, and how many frames were dropped since the last take."""
        with self._lock:
            data = b"".join(self._blocks)
            self._blocks.clear()
            self._frames = 0
            dropped, self.drops_since_take = self.drops_since_take, 0
        return data, dropped


class MicSource:
    """A live input device as one stream (or one per channel with ``split_channels``)."""

    def __init__(
        self,
        device: str | int | None,
        stream_id: str,
        *,
        rate: int | None = None,
        channels: int = 1,
        split_channels: bool = False,
        frames_per_buffer: int | None = None,
        chunk_ms: float = 100.0,
        buffer_s: float = 5.0,
        reopen: bool = False,
        stall_timeout_s: float = 3.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        if channels < 1:
            raise SourceError(f"mic {device!r}: channels must be >= 1, got {channels}")
        if buffer_s <= 0:
            raise SourceError(f"mic {device!r}: buffer_s must be > 0, got {buffer_s}")
        self.device = device
        self.stream_id = stream_id
        self.channels = channels
        self.split_channels = split_channels
        self.chunk_ms = chunk_ms
        self.buffer_s = buffer_s
        self.reopen = reopen
        self.stall_timeout_s = stall_timeout_s
        self.max_backoff_s = max_backoff_s
        self._want_rate = rate
        self._fpb = frames_per_buffer
        self.rate = rate or 16000
        self.device_info: DeviceInfo | None = None
        self._pa: Any = None
        self._pyaudio: Any = None
        self._stream: Any = None
        self._ring: _Ring | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._gen: AsyncGenerator[SourceEvent, None] | None = None
        self._stats = dict.fromkeys(("frames_dropped", "overflows", "reopens", "samples_repaired"), 0)
        split = split_channels and channels > 1
        self._ids = [f"{stream_id}.ch{c}" for c in range(channels)] if split else [stream_id]

    @property
    def stream_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def stats(self) -> dict[str, int]:
        dropped = self._ring.dropped_frames if self._ring is not None else 0
        return {**self._stats, "frames_dropped": self._stats["frames_dropped"] + dropped}

    def __aiter__(self) -> AsyncIterator[SourceEvent]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def open(self) -> None:
        """Open the device now (errors surface here rather than at the first chunk)."""
        if self._stream is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            await asyncio.to_thread(self._open_blocking)

    def _open_blocking(self) -> None:
        pa = _open_pyaudio()
        try:
            info = resolve_device(_devices(pa), self.device)
            if self.channels > info.max_input_channels:
                raise SourceError(
                    f"input device {info.name!r} has {info.max_input_channels} input channels, "
                    f"{self.channels} requested"
                )
            pyaudio = self._pyaudio = _pyaudio()
            rate = self._want_rate or self._pick_rate(pa, pyaudio, info)
            fpb = self._fpb or max(64, rate // 50)
            ring = _Ring(max(fpb * 2, int(rate * self.buffer_s)), 2 * self.channels)
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=self.channels,
                    rate=rate,
                    input=True,
                    input_device_index=info.index,
                    frames_per_buffer=fpb,
                    stream_callback=self._callback,
                    start=False,
                )
                self._ring, self.rate, self.device_info = ring, rate, info
                stream.start_stream()
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot open input device {info.name!r} at {rate} Hz: {exc}") from None
        except BaseException:
            pa.terminate()
            raise
        self._pa, self._stream = pa, stream

    def _pick_rate(self, pa: Any, pyaudio: Any, info: DeviceInfo) -> int:
        """16 kHz when the device offers it (no resampling), else the device's default rate."""
        try:
            if pa.is_format_supported(
                16000, input_device=info.index, input_channels=self.channels, input_format=pyaudio.paInt16
            ):
                return 16000
        except ValueError:
            pass
        return round(info.default_rate)

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status: int
    ) -> tuple[None, int]:
        """PortAudio thread: copy and wake; nothing here may block or raise."""
        pyaudio = self._pyaudio
        if status & pyaudio.paInputOverflow:
            self._stats["overflows"] += 1
        ring = self._ring
        if ring is not None and in_data:
            ring.put(bytes(in_data))
        if not self._wake_pending and self._loop is not None and self._wake is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)
        return None, (pyaudio.paComplete if self._closed else pyaudio.paContinue)

    def _close_blocking(self) -> None:
        stream, pa, ring = self._stream, self._pa, self._ring
        self._stream = self._pa = self._ring = None
        if ring is not None:
            self._stats["frames_dropped"] += ring.dropped_frames
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.stop_stream()
            with contextlib.suppress(Exception):
                stream.close()
        if pa is not None:
            with contextlib.suppress(Exception):
                pa.terminate()

    def _device_alive(self) -> bool:
        stream, ring = self._stream, self._ring
        if stream is None or ring is None:
            return False
        try:
            active = bool(stream.is_active())
        except Exception:
            return False
        return active and time.monotonic() - ring.last_write < self.stall_timeout_s

    async def _capture(self) -> AsyncGenerator[SourceEvent, None]:
        """One open-to-loss session of the device: chunks then one StreamEnded per stream id."""
        assert self._ring is not None and self._wake is not None
        ring, wake = self._ring, self._wake
        asm = ChunkAssembler(
            self.stream_id,
            self.rate,
            self.channels,
            split_channels=self.split_channels,
            chunk_ms=self.chunk_ms,
        )
        started = False
        reason = "closed"
        while True:
            if not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), _POLL_S)
            wake.clear()
            self._wake_pending = False
            data, dropped = ring.take()  # after close: the last captured audio still goes out
            if data:
                frames, repaired = bytes_to_float(data, "s16le", self.channels)
                self._stats["samples_repaired"] += repaired
                # Re-anchor wall time only at the start and after a gap; otherwise sample counts rule.
                n = len(frames)
                wall = time.time() - n / self.rate if (not started or dropped) else None
                started = True
                for chunk in asm.feed(frames, wall):
                    yield chunk
            if self._closed:
                break
            if not data and not self._device_alive():
                reason = "device-lost"
                break
        self._stats["samples_repaired"] += asm.repaired
        for event in asm.finish(reason):
            yield event

    async def _events(self) -> AsyncGenerator[SourceEvent, None]:
        await self.open()
        backoff = 0.5
        try:
            while True:
                async for event in self._capture():
                    yield event
                if self._closed or not self.reopen:
                    return
                log.warning("input device %r lost; reopening", self.device)
                await asyncio.to_thread(self._close_blocking)
                while not self._closed:
                    await asyncio.sleep(backoff)
                    try:
                        await asyncio.to_thread(self._open_blocking)
                    except SourceError as exc:
                        backoff = min(backoff * 2, self.max_backoff_s)
                        log.warning("reopening input device failed (%s); retry in %.1fs", exc, backoff)
                        continue
                    self._stats["reopens"] += 1
                    backoff = 0.5
                    break
                if self._closed:
                    return
        finally:
            await asyncio.to_thread(self._close_blocking)

    async def aclose(self) -> None:
        """Stop capture and release the device (the iterator then ends with reason "closed")."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._gen is not None and not getattr(self._gen, "ag_running", False):
            await self._gen.aclose()
        elif self._gen is None:
            await asyncio.to_thread(self._close_blocking)


__all__ = ["DeviceInfo", "MicSource", "list_devices", "resolve_device"]
