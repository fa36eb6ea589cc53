"""What the quick start and `emotrack plot` leave in the checkout is ignored by git (issue 15, item 16)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("path", ["emotrack-logs/demo/2026-01-01T00-00-00Z_demo.jsonl", "emotrack-plot.png"])
def test_outputs_are_ignored(path: str) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (git check-ignore needs one)")
    r = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert r.returncode == 0, f"{path} is not in .gitignore"
