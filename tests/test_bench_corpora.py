"""``emotrack bench`` finds ../shared/corpora from the checkout it is run in, also when the package is a
regular (non-editable) install in a venv; scripts/quickstart and scripts/test install the same way."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.daemon_helpers import cli_env

FIND = (
    "import streamer; from streamer.bench.audio import find_corpora; "
    "print(streamer.__file__); print(find_corpora())"
)


def _layout(tmp: Path) -> tuple[Path, Path, Path]:
    """tmp/checkout beside tmp/shared/corpora/ravdess, and a copy of the package in a venv's site-packages."""
    checkout, corpora = tmp / "checkout", tmp / "shared" / "corpora"
    checkout.mkdir()
    (corpora / "ravdess").mkdir(parents=True)
    site = tmp / "venv" / "lib" / "python3.11" / "site-packages"
    shutil.copytree(REPO / "streamer", site / "streamer", ignore=shutil.ignore_patterns("__pycache__"))
    return checkout, corpora, site


def test_bench_finds_corpora_from_the_working_directory_when_installed_elsewhere(tmp_path: Path) -> None:
    checkout, corpora, site = _layout(tmp_path)
    r = subprocess.run(
        [sys.executable, "-c", FIND],
        cwd=checkout,
        env=cli_env({"PYTHONPATH": str(site)}),  # no EMOTRACK_* variables
        capture_output=True,
        text=True,
        check=True,
    )
    module, found = r.stdout.split()
    assert module.startswith(str(site)), module  # the installed copy, not this checkout
    assert Path(found) == corpora


def test_explicit_and_environment_win(tmp_path: Path) -> None:
    from streamer.bench.audio import find_corpora

    checkout, corpora, _ = _layout(tmp_path)
    other = tmp_path / "other"
    (other / "tess").mkdir(parents=True)
    assert find_corpora(cwd=checkout, environ={}) == corpora
    assert find_corpora(cwd=checkout, environ={"EMOTRACK_CORPORA": str(other)}) == other
    assert find_corpora(other, cwd=checkout, environ={}) == other
    shared = tmp_path / "s2"
    (shared / "corpora" / "ravdess").mkdir(parents=True)
    assert find_corpora(cwd=checkout, environ={"EMOTRACK_SHARED": str(shared)}) == shared / "corpora"


def test_quickstart_and_test_scripts_install_the_same_way() -> None:
    """Both editable: quickstart's regular install used to replace the editable one scripts/test made."""
    for script in ("quickstart", "test"):
        text = (REPO / "scripts" / script).read_text()
        installs = re.findall(r"pip install[^\n]*'\.\[[^\]]*\]'", text)
        assert installs and all(" -e " in i for i in installs), (script, installs)
