"""Shared pieces of the corpus readers: the error type and the file and label helpers they all use."""

from __future__ import annotations

from pathlib import Path

from training.data.labels import UnknownLabelError, map_label
from training.data.types import Utterance

AUDIO_SUFFIXES = (".wav", ".flac", ".opus", ".ogg")


class CorpusError(Exception):
    """A corpus directory or manifest that cannot be read (one-line message naming the path)."""


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def require_dir(root: Path, corpus: str) -> None:
    if not root.exists():
        raise CorpusError(f"{corpus} corpus directory not found: {root}")
    if not root.is_dir():
        raise CorpusError(f"{corpus} corpus path is not a directory: {root}")


def map_or_fail(corpus: str, original: str, path: Path) -> str | None:
    try:
        return map_label(corpus, original)
    except UnknownLabelError:
        raise CorpusError(f"mislabelled {corpus} file {path}: unknown emotion {original!r}") from None


def nonempty(utts: list[Utterance], corpus: str, root: Path) -> list[Utterance]:
    if not utts:
        raise CorpusError(f"no {corpus} audio files ({'/'.join(AUDIO_SUFFIXES)}) found in {root}")
    return utts
