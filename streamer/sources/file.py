"""Audio files as sources (libsndfile via soundfile: wav/flac/ogg/mp3, any rate, channels, subtype).

Reads block in a worker thread so the event loop keeps serving other streams; ``realtime=True`` paces
chunks like a live microphone, which is how recorded calls are replayed through the daemon.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.audio import ChunkAssembler
from streamer.messages import SAMPLE_RATE, AudioChunk, FloatArray, SourceEvent
from streamer.sources.base import SourceError

_MIN_READ_MS = 250.0


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def open_soundfile(path: Path) -> sf.SoundFile:
    """Open an audio file or raise ``SourceError`` with one line naming it."""
    if not path.exists():
        raise SourceError(f"audio file not found: {path}")
    if path.is_dir():
        raise SourceError(f"audio file is a directory: {path}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"audio file is not readable (permission denied): {path}")
    if path.stat().st_size == 0:
        raise SourceError(f"audio file is empty (0 bytes): {path}")
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise SourceError(f"cannot decode audio file {path}: {_reason(exc)}") from None
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise SourceError(f"audio file has an invalid format ({f.samplerate} Hz, {f.channels} ch): {path}")
    return f


class FileSource:
    """One audio file as one stream (or one stream per channel with ``split_channels``)."""

    def __init__(
        self,
        path: str | Path,
        stream_id: str,
        *,
        realtime: bool = False,
        split_channels: bool = False,
        chunk_ms: float = 100.0,
        loop: bool = False,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.loop = loop
        self._file = open_soundfile(self.path)
        self.samplerate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)
        self.subtype = str(self._file.subtype)
        try:
            self._asm = ChunkAssembler(
                stream_id, self.samplerate, self.channels, split_channels=split_channels, chunk_ms=chunk_ms
            )
        except ValueError as exc:
            self._file.close()
            raise SourceError(f"bad options for audio file {self.path}: {exc}") from None
        self._read_frames = max(1, round(self.samplerate * max(chunk_ms, _MIN_READ_MS) / 1000.0))
        self._gen: AsyncGenerator[SourceEvent, None] | None = None
        # A read may still run in its worker thread when the reader is cancelled; closing the
        # libsndfile handle under it would be a use-after-free, so reads and close share a lock.
        self._io_lock = threading.Lock()
        self._closed = False
        self._stats: dict[str, int] = {"frames_read": 0, "samples_repaired": 0, "loops": 0}

    @property
    def stream_ids(self) -> list[str]:
        return self._asm.stream_ids

    @property
    def offline(self) -> bool:
        """Unpaced reading waits for the engine (nothing dropped); a paced file is live input."""
        return not self.realtime

    @property
    def stats(self) -> dict[str, int]:
        return {**self._stats, "samples_repaired": self._asm.repaired}

    @property
    def closed(self) -> bool:
        """True once the file handle is released."""
        return bool(self._file.closed)

    def __aiter__(self) -> AsyncIterator[SourceEvent]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def aclose(self) -> None:
        """Stop reading and release the file (safe to call more than once)."""
        self._closed = True
        running = bool(getattr(self._gen, "ag_running", False))
        if self._gen is not None and not running:
            await self._gen.aclose()
        if not running:
            self._close_file()

    def _close_file(self) -> None:
        with self._io_lock:
            self._file.close()

    def _read(self) -> FloatArray:
        with self._io_lock:
            if self._file.closed:
                return np.zeros((0, self.channels), dtype=np.float32)
            data: FloatArray = self._file.read(self._read_frames, dtype="float32", always_2d=True)
        return data

    def _rewind(self) -> None:
        with self._io_lock:
            if not self._file.closed:
                self._file.seek(0)

    async def _events(self) -> AsyncGenerator[SourceEvent, None]:
        t0_wall = time.time()
        t0_mono = time.monotonic()
        self._asm.anchor(t0_wall)
        position = 0  # frames read in the current pass over the file
        reason = "eof"
        try:
            while not self._closed:
                try:
                    block = await asyncio.to_thread(self._read)
                except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
                    reason = f"error: {_reason(exc)}"
                    break
                if len(block) == 0:
                    if position < self.frames:
                        reason = "truncated"
                        break
                    if self.loop and position > 0:
                        await asyncio.to_thread(self._rewind)
                        position = 0
                        self._stats["loops"] += 1
                        continue
                    break
                position += len(block)
                self._stats["frames_read"] += len(block)
                for chunk in self._asm.feed(block):
                    await self._pace(chunk, t0_mono)
                    yield chunk
            if self._closed:
                reason = "closed"
            for event in self._asm.finish(reason):
                if isinstance(event, AudioChunk):
                    await self._pace(event, t0_mono)
                yield event
        finally:
            self._close_file()

    async def _pace(self, chunk: AudioChunk, t0_mono: float) -> None:
        """Hold a chunk until its last sample would have been captured live (absolute target: no drift)."""
        if not self.realtime:
            return
        delay = t0_mono + chunk.end_sample / SAMPLE_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


__all__ = ["FileSource", "open_soundfile"]
