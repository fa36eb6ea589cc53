"""Raw PCM sources: stdin, and TCP / Unix-socket servers where every client connection is a stream.

Raw PCM is how other programs (a SIP gateway, ``arecord``, ``ffmpeg -f s16le -``) hand audio over
without a container. Network input is live by default: a slow pipeline drops the oldest chunks (counted,
and logged once per stream) rather than letting memory grow or slowing a caller. With
``backpressure=True`` a server instead stops reading while its queue is full, so TCP flow control slows
a client pushing a recording and nothing is dropped. stdin always applies backpressure to its writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from streamer.audio import SAMPLE_FORMATS, ChunkAssembler, PcmDecoder
from streamer.messages import SAMPLE_RATE, AudioChunk, SourceEvent
from streamer.sources.base import DropOldestQueue, SourceError

log = logging.getLogger(__name__)

_READ_BYTES = 65536


@dataclass(frozen=True, slots=True)
class PcmFormat:
    """How raw bytes are laid out: sample format, sample rate and interleaved channel count."""

    sample_format: str = "s16le"
    rate: int = 16000
    channels: int = 1

    def validate(self, what: str) -> None:
        if self.sample_format not in SAMPLE_FORMATS:
            raise SourceError(
                f"{what}: unknown sample format {self.sample_format!r} (use {'|'.join(SAMPLE_FORMATS)})"
            )
        if not 1000 <= self.rate <= 768_000:
            raise SourceError(f"{what}: sample rate {self.rate} is outside 1000..768000 Hz")
        if not 1 <= self.channels <= 64:
            raise SourceError(f"{what}: channel count {self.channels} is outside 1..64")


class _PcmStream:
    """One byte stream → chunks: reassembles frames, repairs samples, resamples, cuts chunks."""

    def __init__(self, stream_id: str, fmt: PcmFormat, split_channels: bool, chunk_ms: float) -> None:
        self.decoder = PcmDecoder(fmt.sample_format, fmt.channels)
        self.asm = ChunkAssembler(
            stream_id, fmt.rate, fmt.channels, split_channels=split_channels, chunk_ms=chunk_ms
        )
        self.partial_bytes = 0
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[AudioChunk]:
        self.bytes_in += len(data)
        frames = self.decoder.feed(data)
        return self.asm.feed(frames) if len(frames) else []

    def end(self, reason: str) -> list[SourceEvent]:
        self.partial_bytes = self.decoder.drop_partial()
        return list(self.asm.finish(reason))

    @property
    def repaired(self) -> int:
        return self.decoder.repaired + self.asm.repaired


class StdinSource:
    """Raw PCM read from standard input (or any readable fd) until EOF; the writer is back-pressured."""

    def __init__(
        self,
        stream_id: str,
        fmt: PcmFormat | None = None,
        *,
        split_channels: bool = False,
        chunk_ms: float = 100.0,
        fd: int | None = None,
    ) -> None:
        self.fmt = fmt or PcmFormat()
        self.fmt.validate("stdin")
        self._fd = 0 if fd is None else fd  # fd 0 itself: sys.stdin may be replaced or None
        self._stream = _PcmStream(stream_id, self.fmt, split_channels, chunk_ms)
        self._closed = False
        self._gen: AsyncGenerator[SourceEvent, None] | None = None

    @property
    def stream_ids(self) -> list[str]:
        return self._stream.asm.stream_ids

    @property
    def offline(self) -> bool:
        """stdin back-pressures its writer, so its windows wait for the engine instead of dropping."""
        return True

    @property
    def stats(self) -> dict[str, int]:
        return {
            "bytes_read": self._stream.bytes_in,
            "samples_repaired": self._stream.repaired,
            "partial_frame_bytes_dropped": self._stream.partial_bytes,
        }

    def __aiter__(self) -> AsyncIterator[SourceEvent]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def aclose(self) -> None:
        self._closed = True
        if self._gen is not None and not getattr(self._gen, "ag_running", False):
            await self._gen.aclose()

    def _reader(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue[bytes | BaseException]) -> None:
        """Blocking reads in a daemon thread (a read blocked on a quiet pipe must not hold up exit)."""
        while not self._closed:
            try:
                data: bytes | BaseException = os.read(self._fd, _READ_BYTES)
            except OSError as exc:
                data = exc
            try:
                asyncio.run_coroutine_threadsafe(q.put(data), loop).result()
            except RuntimeError:  # the loop is gone: nobody is listening any more
                return
            if not isinstance(data, bytes) or not data:
                return

    async def _events(self) -> AsyncGenerator[SourceEvent, None]:
        q: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=4)
        thread = threading.Thread(
            target=self._reader, args=(asyncio.get_running_loop(), q), name="emotrack-stdin", daemon=True
        )
        thread.start()
        self._stream.asm.anchor(time.time())
        reason = "eof"
        while not self._closed:
            data = await q.get()
            if isinstance(data, BaseException):
                reason = f"error: {data}"
                break
            if not data:
                break
            for chunk in self._stream.feed(data):
                yield chunk
        for event in self._stream.end("closed" if self._closed else reason):
            yield event


def session_token(now: float | None = None) -> str:
    """A server's start time in milliseconds, base 36 (8 characters until 2059), for client stream ids
    that a restarted daemon never hands out again."""
    n = int((time.time() if now is None else now) * 1000)
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits or "0"


class PcmServerSource:
    """A TCP or Unix-socket server; each client connection becomes a stream of its own.

    Client ids are ``<id>-<session>-<n>`` when a ``session`` token is given (the daemon gives its start
    time, so a new caller never inherits an old caller's id, retained topics or entities after a
    restart), else ``<id>`` for the first client and ``<id>-<n>`` after it.
    """

    ephemeral = True  # a client's stream ends with its connection: nothing of it should be retained

    def __init__(
        self,
        stream_id: str,
        fmt: PcmFormat | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | Path | None = None,
        split_channels: bool = False,
        chunk_ms: float = 100.0,
        max_queue_chunks: int = 256,
        max_clients: int = 16,
        backpressure: bool = False,
        session: str | None = None,
    ) -> None:
        self.fmt = fmt or PcmFormat()
        self.session = session
        self.stream_id = stream_id
        self.host = host
        self.port = port
        self.unix_path = Path(unix_path) if unix_path is not None else None
        self.fmt.validate(self.url)
        self.split_channels = split_channels
        self.chunk_ms = chunk_ms
        self.max_clients = max_clients
        self.backpressure = backpressure
        self._queue: DropOldestQueue | None = None
        self._max_queue = max_queue_chunks
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: dict[str, _PcmStream] = {}
        self._dropped_by_stream: dict[str, int] = {}  # live streams with dropped audio: samples
        self._n_conn = 0
        self._closed = False
        self._gen: AsyncGenerator[SourceEvent, None] | None = None
        self._stats: dict[str, int] = {
            "connections": 0,
            "connections_refused": 0,
            "partial_frames_dropped": 0,
            "samples_repaired": 0,
        }

    @property
    def url(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def stream_ids(self) -> list[str]:
        """Ids of the clients connected now (ended ones are forgotten: a long-lived server stays small)."""
        return [sid for stream in self._live.values() for sid in stream.asm.stream_ids]

    @property
    def stats(self) -> dict[str, int]:
        q = self._queue
        return {
            **self._stats,
            "samples_repaired": self._stats["samples_repaired"]
            + sum(s.repaired for s in self._live.values()),
            "active_clients": len(self._tasks),
            "chunks_dropped": q.dropped_chunks if q is not None else 0,  # not `if q`: it has a __len__
            "samples_dropped": q.dropped_samples if q is not None else 0,
        }

    async def start(self) -> None:
        """Bind and listen (idempotent); afterwards ``url`` holds the real port when 0 was asked."""
        if self._server is not None:
            return
        self._queue = DropOldestQueue(self._max_queue, on_drop=self._dropped)
        try:
            if self.unix_path is not None:
                self._clear_stale_socket(self.unix_path)
                self._server = await asyncio.start_unix_server(self._handle, path=str(self.unix_path))
            else:
                self._server = await asyncio.start_server(self._handle, host=self.host, port=self.port)
                self.port = int(self._server.sockets[0].getsockname()[1])
        except OSError as exc:
            raise SourceError(f"cannot listen on {self.url}: {exc.strerror or exc}") from None

    def _clear_stale_socket(self, path: Path) -> None:
        """Remove a socket file left by a dead process; refuse to touch anything else or a live socket."""
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise SourceError(f"cannot listen on unix:{path}: the path exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink(missing_ok=True)
                return
        raise SourceError(f"cannot listen on unix:{path}: another process is serving it")

    def __aiter__(self) -> AsyncIterator[SourceEvent]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def _events(self) -> AsyncGenerator[SourceEvent, None]:
        await self.start()
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    async def aclose(self) -> None:
        """Stop listening, end every client stream with reason "closed", then end the iterator."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            if self.unix_path is not None:
                self.unix_path.unlink(missing_ok=True)
        if self._queue is not None:
            self._queue.put_nowait(None)

    def _dropped(self, chunk: AudioChunk) -> None:
        """A chunk the queue dropped: counted against its stream, which is warned about once."""
        sid = chunk.stream_id
        if self._closed:
            return  # shutting down: the daemon reads no more audio anyway
        if sid not in self._dropped_by_stream:
            if not any(sid in s.asm.stream_ids for s in self._live.values()):
                return  # the stream already ended (its last chunks were still queued): totals only
            self._dropped_by_stream[sid] = 0
            log.warning(
                "%s: stream %s: the pipeline is behind the client; dropping its oldest audio "
                "(counted in chunks_dropped; ?backpressure=1 slows the client instead)",
                self.url,
                sid,
            )
        self._dropped_by_stream[sid] += len(chunk.samples)

    def _report_drops(self, stream_ids: list[str]) -> None:
        for sid in stream_ids:
            lost = self._dropped_by_stream.pop(sid, 0)
            if lost:
                log.warning(
                    "%s: stream %s: %.2f s of its audio was dropped", self.url, sid, lost / SAMPLE_RATE
                )

    async def _finish(self, queue: DropOldestQueue, stream: _PcmStream, reason: str) -> None:
        """Queue the stream's last chunk and its end, waiting for room like any chunk unless closing."""
        events = stream.end(reason)
        for i, event in enumerate(events):
            if not self.backpressure or self._closed:
                queue.put_nowait(event)
                continue
            try:
                await queue.put(event)
            except asyncio.CancelledError:  # aclose: the end must still be queued (see _handle)
                for rest in events[i:]:
                    queue.put_nowait(rest)
                return

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed or len(self._tasks) >= self.max_clients:
            self._stats["connections_refused"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None and self._queue is not None
        self._tasks.add(task)
        self._n_conn += 1
        self._stats["connections"] += 1
        if self.session is not None:
            sid = f"{self.stream_id}-{self.session}-{self._n_conn}"
        else:
            sid = self.stream_id if self._n_conn == 1 else f"{self.stream_id}-{self._n_conn}"
        stream = _PcmStream(sid, self.fmt, self.split_channels, self.chunk_ms)
        self._live[sid] = stream
        queue = self._queue
        reason = "disconnected"
        try:
            while True:
                try:
                    data = await reader.read(_READ_BYTES)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                if stream.bytes_in == 0:
                    stream.asm.anchor(time.time())
                for chunk in stream.feed(data):
                    if self.backpressure:
                        await queue.put(chunk)  # reading stops while full: TCP slows the client
                    else:
                        queue.put_nowait(chunk)
        except asyncio.CancelledError:
            # Only aclose cancels a client: end normally, since asyncio's server callback reads the
            # exception of this task and logs a cancelled one as an error with a traceback.
            reason = "closed"
        except Exception as exc:  # never let one client take the server down
            reason = f"error: {exc}"
        try:
            await self._finish(queue, stream, reason)
        finally:
            self._report_drops(stream.asm.stream_ids)
            if stream.partial_bytes:
                self._stats["partial_frames_dropped"] += 1
            self._stats["samples_repaired"] += stream.repaired
            del self._live[sid]
            writer.close()
            self._tasks.discard(task)


__all__ = ["PcmFormat", "PcmServerSource", "StdinSource", "session_token"]
