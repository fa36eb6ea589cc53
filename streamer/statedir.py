"""The daemon's state directory: the MQTT spool and the seq store, held by one daemon at a time.

Two daemons appending to one spool would interleave indexes and reuse seqs, so the directory is
locked (``flock`` on ``<dir>/lock``, released by the kernel when the process dies, even on SIGKILL).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamer.seqstore import SeqStore, SeqStoreError, ensure_private_dir, state_directory
from streamer.sinks.mqtt_config import MqttConfig
from streamer.sinks.spool import Spool, SpoolConfig

log = logging.getLogger("emotrack.state")


@dataclass
class StateDir:
    path: Path
    seqstore: SeqStore
    spool: Spool | None
    lock_fd: int

    def close(self) -> None:
        """Persist exact seqs, close the spool and release the lock (idempotent)."""
        if self.lock_fd < 0:
            return
        try:
            self.seqstore.flush()
        except SeqStoreError as exc:
            log.error("%s", exc)
        if self.spool is not None:
            with contextlib.suppress(OSError):
                self.spool.close()
        os.close(self.lock_fd)
        self.lock_fd = -1


def lock_directory(path: Path) -> int:
    """An exclusive lock on ``<path>/lock``; SeqStoreError naming the holder when taken."""
    lock = path / "lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SeqStoreError(f"state directory {path}: cannot create its lock ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SeqStoreError(
            f"state directory {path}: in use by another emotrack daemon (pid {holder})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_state(
    configured: Path | None, mqtt: MqttConfig, environ: Mapping[str, str] | None = None
) -> StateDir | None:
    """Lock the state directory and open its seq store and (if enabled) the spool.

    None when no directory is configured and systemd gave none: records then keep the in-memory
    outbox only and seqs restart at 0 (said once in the log).
    """
    env = os.environ if environ is None else environ
    if configured is None and not env.get("STATE_DIRECTORY"):
        log.info("no state directory: MQTT spool off, seqs restart at 0 (set daemon.state_directory)")
        return None
    path = ensure_private_dir(state_directory(configured, env))
    fd = lock_directory(path)
    try:
        seqs = SeqStore(path)
        spool = None
        if mqtt.spool and mqtt.qos > 0:
            spool = Spool(
                SpoolConfig(
                    path / "spool",
                    max_bytes=mqtt.spool_max_bytes,
                    max_records=mqtt.spool_max_records,
                    fsync=mqtt.spool_fsync,
                )
            )
    except BaseException:
        os.close(fd)
        raise
    return StateDir(path, seqs, spool, fd)
