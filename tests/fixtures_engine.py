"""Engine fixtures: one tiny engine exported per test session, plus throwaway copies to corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tiny_engine import build_tiny_engine


@pytest.fixture(scope="session")
def tiny_engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny engine (labels neutral/happy/sad/angry, logits + vad, 2 s window); treat as read-only."""
    pytest.importorskip("torch", reason="building the tiny engine needs the .[train] extra (torch)")
    return build_tiny_engine(tmp_path_factory.mktemp("tiny_engine"))


@pytest.fixture()
def tiny_engine_copy(tiny_engine_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny engine that a test may modify or corrupt."""
    dst = tmp_path / "engine"
    shutil.copytree(tiny_engine_dir, dst)
    return dst
