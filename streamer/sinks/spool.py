"""On-disk spool: the MQTT sink's durable FIFO of window and utterance messages.

Every message with a seq is appended here before it is published, so neither a broker outage, a
full in-memory outbox nor a daemon crash loses it: after a restart the unacknowledged tail is sent
again, in order, before newer messages. Layout (a 0700 directory, 0600 files)::

    seg-<first index, 20 digits>.jsonl   append-only segments, one JSON line per message
    ack                                  checkpoint: the highest acknowledged index (write+rename)

A line is ``{"i": index, "t": topic, "q": qos, "r": retain, "p": payload}``. Each append is one
``write`` on an unbuffered descriptor, so a killed daemon leaves at most a torn last line, which
recovery skips (and truncates away). The spool is bounded in bytes and records: past either cap
the oldest whole segment is deleted, acknowledged or not, and its unacknowledged messages are
counted in ``dropped``. ``fsync`` is ``always`` (each append, power-loss safe), ``interval`` (at
most every ``fsync_interval_s`` and at segment ends) or ``never`` (the OS decides; a crash of the
daemon alone still loses nothing).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamer.sinks.base import SinkError

log = logging.getLogger("emotrack.spool")

FsyncPolicy = Literal["always", "interval", "never"]
_PREFIX, _SUFFIX = "seg-", ".jsonl"


class SpoolError(SinkError, OSError):
    """The spool directory cannot be used; one line naming it."""


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    directory: Path
    max_bytes: int = 256 * 1024 * 1024
    max_records: int = 1_000_000
    segment_bytes: int = 4 * 1024 * 1024
    fsync: FsyncPolicy = "interval"
    fsync_interval_s: float = 1.0
    checkpoint_interval_s: float = 0.5  # how often the ack position is written (more = fewer dups)

    def __post_init__(self) -> None:
        if self.max_bytes < 4096 or self.max_records < 1 or self.segment_bytes < 512:
            raise SpoolError("spool: max_bytes >= 4096, max_records >= 1 and segment_bytes >= 512 needed")
        if self.fsync not in ("always", "interval", "never"):
            raise SpoolError(f"spool: fsync must be always, interval or never, got {self.fsync!r}")


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    index: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class _Segment:
    first: int
    path: Path
    last: int  # index of its last complete line (first - 1 while empty)
    size: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Spool:
    """A bounded, crash-safe, append-only FIFO of messages with an acknowledged position."""

    def __init__(self, cfg: SpoolConfig) -> None:
        self.cfg = cfg
        self.dir = cfg.directory
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the last segment, open for appending
        self._acked = -1
        self._ack_written = -1
        self._ack_time = 0.0
        self._sync_time = 0.0
        self._dirty = False
        self._cursor: tuple[int, int, int] | None = None  # (segment first, byte offset, next index)
        self.appended = 0
        self.dropped = 0  # unacknowledged messages lost to the caps
        self.torn = 0  # torn or unreadable lines skipped at recovery
        # Segments small enough that dropping whole ones keeps the caps (at least 8 per cap).
        self._seg_bytes = min(cfg.segment_bytes, max(512, cfg.max_bytes // 8))
        self._seg_records = max(1, cfg.max_records // 8)
        self._open()

    # -- public ---------------------------------------------------------------------------------
    @property
    def acked(self) -> int:
        return self._acked

    @property
    def last_index(self) -> int:
        """Index of the newest message ever appended (-1 when none)."""
        return self._segments[-1].last if self._segments else self._acked

    @property
    def pending(self) -> int:
        """Messages on disk not yet acknowledged."""
        return sum(max(0, s.last - max(s.first - 1, self._acked)) for s in self._segments)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def append(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Write one message; returns its index. Never blocks on the network."""
        index = self.last_index + 1
        line = (
            json.dumps(
                {"i": index, "t": topic, "q": qos, "r": retain, "p": payload.decode("utf-8")},
                separators=(",", ":"),
                ensure_ascii=False,
            )
            + "\n"
        ).encode("utf-8")
        seg = self._segments[-1] if self._segments else None
        if (
            seg is None
            or self._fd is None
            or (seg.size > 0 and seg.size + len(line) > self._seg_bytes)
            or seg.count >= self._seg_records
        ):
            seg = self._new_segment(index)
        assert self._fd is not None
        try:
            os.write(self._fd, line)
        except OSError as exc:
            raise SpoolError(f"spool {self.dir}: cannot write ({exc.strerror})") from None
        seg.last = index
        seg.size += len(line)
        self.appended += 1
        self._dirty = True
        if self.cfg.fsync == "always" or (
            self.cfg.fsync == "interval" and time.monotonic() - self._sync_time >= self.cfg.fsync_interval_s
        ):
            self.sync()
        self._enforce_caps()
        return index

    def read(self, after: int, limit: int) -> list[SpoolEntry]:
        """Up to ``limit`` messages with index > ``after`` (and > the ack position), oldest first."""
        after = max(after, self._acked)
        out: list[SpoolEntry] = []
        for seg in self._segments:
            if len(out) >= limit:
                break
            if seg.last <= after:
                continue
            want = max(after + 1, seg.first) if not out else seg.first
            offset = 0
            if self._cursor is not None and self._cursor[0] == seg.first and self._cursor[2] <= want:
                offset = self._cursor[1]
            offset = self._read_segment(seg, offset, want, limit, out)
            self._cursor = (seg.first, offset, out[-1].index + 1 if out else want)
        return out

    def ack(self, index: int) -> None:
        """Everything up to ``index`` was delivered: delete whole segments, checkpoint now and then."""
        if index <= self._acked:
            return
        self._acked = index
        while len(self._segments) > 1 and self._segments[0].last <= index:
            self._remove(self._segments.pop(0))
        if time.monotonic() - self._ack_time >= self.cfg.checkpoint_interval_s:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the ack position (write + rename: a crash leaves the old or the new one)."""
        if self._acked == self._ack_written:
            return
        tmp = self.dir / "ack.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{self._acked}\n".encode())
                if self.cfg.fsync != "never":
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.dir / "ack")
        except OSError as exc:
            raise SpoolError(f"spool {self.dir}: cannot write the ack checkpoint ({exc.strerror})") from None
        self._ack_written = self._acked
        self._ack_time = time.monotonic()

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._sync_time = time.monotonic()

    def close(self) -> None:
        """Checkpoint, fsync (unless ``never``) and close; the spool can be opened again later."""
        self.checkpoint()
        if self._fd is not None:
            if self.cfg.fsync != "never":
                self.sync()
            os.close(self._fd)
            self._fd = None

    def counters(self) -> dict[str, int]:
        return {
            "spool_pending": self.pending,
            "spool_bytes": self.size_bytes,
            "spool_dropped": self.dropped,
            "spool_torn": self.torn,
        }

    # -- internals ------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise SpoolError(f"spool directory {self.dir}: cannot use ({exc.strerror})") from None
        self._acked = self._ack_written = self._read_ack()
        try:
            names = sorted(
                p for p in self.dir.iterdir() if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)
            )
        except OSError as exc:
            raise SpoolError(f"spool directory {self.dir}: cannot list ({exc.strerror})") from None
        for path in names:
            try:
                first = int(path.name[len(_PREFIX) : -len(_SUFFIX)])
            except ValueError:
                continue
            seg = self._recover(path, first)
            if seg.count <= 0 or (seg.last <= self._acked and path != names[-1]):
                self._remove(seg)
                continue
            self._segments.append(seg)
        if self._segments:
            last = self._segments[-1]
            self._fd = self._open_append(last.path)
        pending = self.pending
        if pending:
            log.info("spool %s: %d unacknowledged messages from a previous run", self.dir, pending)

    def _recover(self, path: Path, first: int) -> _Segment:
        """Scan a segment; cut a torn or corrupt tail so appends continue on a clean line."""
        data = path.read_bytes()
        good = 0
        last = first - 1
        for raw in data.splitlines(keepends=True):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("torn")
                index = int(json.loads(raw)["i"])
            except (ValueError, KeyError, TypeError):
                self.torn += 1
                break
            if index != last + 1:
                self.torn += 1
                break
            last = index
            good += len(raw)
        if good < len(data):
            log.warning("spool %s: skipped a torn or corrupt tail (%d bytes)", path, len(data) - good)
            os.truncate(path, good)
        os.chmod(path, 0o600)
        return _Segment(first, path, last, good)

    def _read_ack(self) -> int:
        try:
            return int((self.dir / "ack").read_text().strip())
        except FileNotFoundError:
            return -1
        except (OSError, ValueError):
            log.warning("spool %s: unreadable ack checkpoint; resending everything spooled", self.dir)
            return -1

    def _open_append(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool {path}: cannot open ({exc.strerror})") from None
        os.fchmod(fd, 0o600)
        return fd

    def _new_segment(self, first: int) -> _Segment:
        if self._fd is not None:
            if self.cfg.fsync != "never":
                self.sync()
            os.close(self._fd)
        path = self.dir / f"{_PREFIX}{first:020d}{_SUFFIX}"
        self._fd = self._open_append(path)
        seg = _Segment(first, path, first - 1, 0)
        self._segments.append(seg)
        return seg

    def _read_segment(self, seg: _Segment, offset: int, want: int, limit: int, out: list[SpoolEntry]) -> int:
        try:
            with open(seg.path, "rb") as fh:
                fh.seek(offset)
                while len(out) < limit:
                    raw = fh.readline()
                    if not raw.endswith(b"\n"):
                        break
                    d = json.loads(raw)
                    if d["i"] > seg.last:
                        break
                    offset += len(raw)
                    if d["i"] >= want:
                        out.append(SpoolEntry(d["i"], d["t"], d["p"].encode("utf-8"), d["q"], d["r"]))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError) as exc:
            raise SpoolError(f"spool {seg.path}: unreadable ({exc})") from None
        return offset

    def _enforce_caps(self) -> None:
        while len(self._segments) > 1 and (
            self.size_bytes > self.cfg.max_bytes
            or self.last_index - self._segments[0].first + 1 > self.cfg.max_records
        ):
            seg = self._segments.pop(0)
            lost = max(0, seg.last - max(seg.first - 1, self._acked))
            self.dropped += lost
            self._acked = max(self._acked, seg.last)
            self._remove(seg)
            log.warning("spool %s full: dropped the oldest segment (%d unsent messages)", self.dir, lost)

    def _remove(self, seg: _Segment) -> None:
        if self._cursor is not None and self._cursor[0] == seg.first:
            self._cursor = None
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("spool %s: cannot delete %s (%s)", self.dir, seg.path.name, exc.strerror)
