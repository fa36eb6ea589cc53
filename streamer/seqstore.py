"""Per-stream seq persistence, so (stream, seq) stays unique across daemon restarts and crashes.

Subscribers drop duplicates by (stream, seq): a seq reused after a restart would make them drop a
new record. The store leases seqs in blocks: before a stream uses a seq at or beyond its persisted
mark, the mark moves ``lease`` ahead and the file is rewritten (write to a temp file, fsync,
rename, fsync the directory). A clean shutdown writes the exact next seq; after a crash the stream
resumes at the mark, skipping at most ``lease`` seqs (a gap, never a reuse).

File: ``<state dir>/seq.json``, ``{"version": 1, "next": {"<stream>": <next seq>, ...}}``, 0600.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from streamer.errors import EmotrackError

log = logging.getLogger("emotrack.seqstore")

DEFAULT_STATE_DIR = Path("emotrack-state")


class SeqStoreError(EmotrackError, OSError):
    """The seq file cannot be read or written; one line naming it."""


def state_directory(configured: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Configured, else systemd's $STATE_DIRECTORY (first entry), else ./emotrack-state."""
    if configured is not None:
        return configured
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return DEFAULT_STATE_DIR


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700: it holds personal data."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise SeqStoreError(f"state directory {path}: cannot use ({exc.strerror})") from None
    return path


class SeqStore:
    """Next seq per stream id, persisted atomically in leased blocks."""

    def __init__(self, directory: Path, *, lease: int = 100) -> None:
        if lease < 1:
            raise ValueError(f"lease must be >= 1 (got {lease})")
        self.path = ensure_private_dir(directory) / "seq.json"
        self.lease = lease
        self._next: dict[str, int] = {}  # next seq to hand out
        self._mark: dict[str, int] = {}  # persisted: no seq >= mark has been used
        self.writes = 0
        self._load()

    def start_seq(self, stream: str) -> int:
        """Where a (re)starting stream continues: its persisted mark, 0 for a new stream."""
        return self._next.get(stream, 0)

    def use(self, stream: str, seq: int) -> None:
        """Record that ``seq`` is about to leave the daemon; persists a new lease when needed.

        Called before the record reaches any sink, so a crash after this never reuses ``seq``.
        """
        if seq + 1 > self._next.get(stream, 0):
            self._next[stream] = seq + 1
        if seq >= self._mark.get(stream, 0):
            self._mark[stream] = seq + 1 + self.lease
            self._write(self._mark)

    def flush(self) -> None:
        """Persist the exact next seqs (clean shutdown: no gap on the next start)."""
        if self._mark != self._next:
            self._mark = dict(self._next)
            self._write(self._mark)

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            nxt = data["next"]
            if not isinstance(nxt, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in nxt.items()
            ):
                raise ValueError("bad 'next' table")
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SeqStoreError(
                f"seq file {self.path}: unreadable ({exc}); move it away to start every stream at seq 0"
            ) from None
        self._next = dict(nxt)
        self._mark = dict(nxt)

    def _write(self, table: Mapping[str, int]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"version": 1, "next": dict(sorted(table.items()))}, separators=(",", ":"))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise SeqStoreError(f"seq file {self.path}: cannot write ({exc.strerror})") from None
        self.writes += 1
