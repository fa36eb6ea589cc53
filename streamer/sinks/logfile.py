"""Conversation logs: one JSON-lines file per stream and session, written by a worker thread.

``<dir>/<stream>/<session-start-UTC>_<stream>.jsonl`` starts with a ``session`` header, then one
line per window/utterance record (state records are not logged), and ends with ``stream_end`` (why the
stream ended and its audio seconds, as the daemon tells them).
Each line is a single ``os.write`` of a complete line on an unbuffered descriptor, so a crash
loses at most the line being written. Rotation by size or age continues the session in
``..._part2.jsonl`` with its own header. Directories are 0700 and files 0600 whatever the umask:
conversations are personal data.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer import __version__
from streamer.records import SCHEMA_VERSION, Record, StateRecord
from streamer.sinks.base import SinkError, StreamEnd, safe_name, to_json
from streamer.sinks.worker import BoundedWorker

log = logging.getLogger("emotrack.logs")


class LogError(SinkError, OSError):
    """The log directory cannot be used; one line naming it."""


class LogConfigError(SinkError, ValueError):
    """A bad logs setting; one line naming it."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    directory: Path
    rotate_bytes: int | None = 50_000_000  # None: no size rotation
    rotate_seconds: float | None = 86_400.0  # None: no age rotation (default: daily)
    fsync: bool = False  # fsync after every line (durable, slower)
    queue_size: int = 10_000  # records waiting for the writer thread; oldest dropped beyond

    def __post_init__(self) -> None:
        if self.rotate_bytes is not None and self.rotate_bytes < 1024:
            raise LogConfigError(f"logs.rotate_bytes must be >= 1024 or none, got {self.rotate_bytes}")
        if self.rotate_seconds is not None and self.rotate_seconds <= 0:
            raise LogConfigError(f"logs.rotate_seconds must be > 0 or none, got {self.rotate_seconds}")
        if self.queue_size < 1:
            raise LogConfigError(f"logs.queue_size must be >= 1, got {self.queue_size}")


@dataclass(slots=True)
class _Line:
    stream: str
    data: bytes
    engine: dict[str, Any]


@dataclass(slots=True)
class _End:
    stream: str | None  # None: every open session
    reason: str
    audio_s: float | None = None


_Op = _Line | _End


class _Session:
    """An open session of one stream (touched only by the writer thread)."""

    def __init__(self, stream: str, session_id: str, started: float, base: Path, engine: dict[str, Any]):
        self.stream = stream
        self.id = session_id
        self.started = started
        self.base = base  # path without ".jsonl"; parts add "_partN"
        self.engine = engine
        self.part = 0
        self.fd = -1
        self.path: Path | None = None
        self.size = 0
        self.part_records = 0
        self.records = 0
        self.opened_at = 0.0


class ConversationLog:
    """Sink writing conversation logs; see the module docstring."""

    def __init__(
        self,
        cfg: LogConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.directory = Path(cfg.directory)
        self._sources = dict(sources or {})  # stream -> audio file: header "source" (emotrack replay)
        self._clock = clock
        self._wall = wall_clock
        self._sessions: dict[str, _Session] = {}
        self._worker: BoundedWorker[_Op] = BoundedWorker(
            "emotrack-logs", self._handle, cfg.queue_size, droppable=lambda op: isinstance(op, _Line)
        )
        self.files_opened = 0
        self.written = 0  # records on disk (incremented by the writer thread)

    # -- Sink protocol --------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the log directory (0700) now, so a bad path fails at startup in one line."""
        try:
            _make_private_dir(self.directory)
        except OSError as exc:
            raise LogError(f"cannot use log directory {self.directory}: {exc.strerror or exc}") from None
        self._worker.start()

    async def emit(self, record: Record) -> None:
        if isinstance(record, StateRecord):
            return
        self._worker.put(
            _Line(record.stream, (to_json(record.to_dict()) + "\n").encode(), record.engine.to_dict())
        )

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        end = end or StreamEnd()
        self._worker.put(_End(stream, end.reason, end.audio_s))

    async def close(self) -> None:
        """Write what is queued, end every open session (reason "shutdown"), stop the thread."""
        self._worker.put(_End(None, "shutdown"))
        await self._worker.stop()

    async def flush(self) -> None:
        """Wait until everything emitted so far is on disk (in the page cache; fsync if configured)."""
        await self._worker.drain()

    # -- observability --------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self._worker.dropped

    @property
    def errors(self) -> int:
        return self._worker.errors

    def current_path(self, stream: str) -> Path | None:
        s = self._sessions.get(stream)
        return None if s is None else s.path

    def counters(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "errors": self.errors,
            "files": self.files_opened,
            "queued": self._worker.queued,
        }

    # -- writer thread --------------------------------------------------------------------------
    def _handle(self, op: _Op) -> None:
        if isinstance(op, _End):
            self._end(op)
            return
        s = self._sessions.get(op.stream)
        if s is None:
            s = self._new_session(op.stream, op.engine)
        elif self._should_rotate(s, len(op.data)):
            self._close_part(s)
            self._open_part(s)
        self._write(s, op.data)
        s.part_records += 1
        s.records += 1
        self.written += 1

    def _should_rotate(self, s: _Session, n: int) -> bool:
        if s.part_records == 0:
            return False
        if self.cfg.rotate_bytes is not None and s.size + n > self.cfg.rotate_bytes:
            return True
        return self.cfg.rotate_seconds is not None and self._clock() - s.opened_at >= self.cfg.rotate_seconds

    def _new_session(self, stream: str, engine: dict[str, Any]) -> _Session:
        started = self._wall()
        name = safe_name(stream)
        stream_dir = self.directory / name
        _make_private_dir(stream_dir)
        stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
        base = stream_dir / f"{stamp}_{name}"
        n = 1
        while any(stream_dir.glob(base.name + "*.jsonl")):  # two sessions within one second
            n += 1
            base = stream_dir / f"{stamp}_{name}-{n}"
        s = _Session(stream, uuid.uuid4().hex, started, base, engine)
        self._open_part(s)
        self._sessions[stream] = s
        return s

    def _open_part(self, s: _Session) -> None:
        s.part += 1
        suffix = "" if s.part == 1 else f"_part{s.part}"
        path = s.base.with_name(f"{s.base.name}{suffix}.jsonl")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # the mode passed to open is filtered by the umask
        previous = s.path.name if s.path is not None else None
        s.fd, s.path, s.size, s.part_records, s.opened_at = fd, path, 0, 0, self._clock()
        self.files_opened += 1
        header: dict[str, Any] = {
            "type": "session",
            "schema": SCHEMA_VERSION,
            "stream": s.stream,
            "session": s.id,
            "part": s.part,
            "started": _iso(s.started),
            "started_unix": round(s.started, 3),
            "engine": s.engine,
            "emotrack": __version__,
        }
        if s.stream in self._sources:
            header["source"] = self._sources[s.stream]
        if previous is not None:
            header["previous"] = previous
            header["part_started"] = _iso(self._wall())
        self._write(s, (to_json(header) + "\n").encode())

    def _end(self, op: _End) -> None:
        streams = list(self._sessions) if op.stream is None else [op.stream]
        for stream in streams:
            s = self._sessions.pop(stream, None)
            if s is not None:
                self._end_session(s, op.reason, op.audio_s)

    def _end_session(self, s: _Session, reason: str, audio_s: float | None) -> None:
        now = self._wall()
        line = {
            "type": "stream_end",
            "stream": s.stream,
            "session": s.id,
            "reason": reason,
            "ended": _iso(now),
            "ended_unix": round(now, 3),
            "records": s.records,
            "parts": s.part,
        }
        if audio_s is not None:
            line["audio_s"] = round(audio_s, 3)
        try:
            self._write(s, (to_json(line) + "\n").encode())
        finally:
            self._close_part(s)

    def _write(self, s: _Session, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(s.fd, view)
            view = view[n:]
        s.size += len(data)
        if self.cfg.fsync:
            os.fsync(s.fd)

    def _close_part(self, s: _Session) -> None:
        if s.fd >= 0:
            if self.cfg.fsync:
                os.fsync(s.fd)
            os.close(s.fd)
            s.fd = -1


def _make_private_dir(path: Path) -> None:
    """mkdir -p with 0700 on every directory we create (umask-proof); existing ones are kept."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise NotADirectoryError(20, "Not a directory", str(path))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
