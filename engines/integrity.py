"""Checksums: an engine is verified against its manifest before a single byte reaches a runtime."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from engines.errors import EngineError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so large plans do not sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(engine_dir: Path, rel_path: str, expected: str) -> None:
    """Raise EngineError naming the file when it is missing or its sha256 differs from ``expected``."""
    path = engine_dir / rel_path
    if not path.is_file():
        raise EngineError(f"{path}: file listed in engine.json is missing")
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise EngineError(f"{path}: cannot read ({e.strerror or e})") from e
    if actual != expected.lower():
        raise EngineError(
            f"{path}: checksum mismatch (sha256 {actual[:12]}…, engine.json says {expected[:12]}…)"
        )


def verify_checksums(engine_dir: Path, checksums: dict[str, str], only: Iterable[str] | None = None) -> None:
    """Verify the listed files (all, or the subset ``only``) against their recorded sha256."""
    wanted = set(only) if only is not None else None
    for rel_path, expected in checksums.items():
        if wanted is None or rel_path in wanted:
            verify_file(engine_dir, rel_path, expected)
