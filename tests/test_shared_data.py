"""The tests find the shared data where they are told, and the README names every reason a test skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import EmotrackConfig, apply_env
from tests import shared_data
from tests.conftest import REPO


def test_alsa_file_mic_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "tools" / "alsa-file-mic"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    monkeypatch.delenv("EMOTRACK_ALSA_FILE_MIC", raising=False)
    monkeypatch.setenv("EMOTRACK_SHARED", str(tmp_path))
    assert shared_data.alsa_file_mic() == tool
    (tmp_path / "corpora" / "ravdess").mkdir(parents=True)
    monkeypatch.delenv("EMOTRACK_CORPORA", raising=False)
    assert shared_data.corpora_root() == tmp_path / "corpora"
    monkeypatch.setenv("EMOTRACK_ALSA_FILE_MIC", str(tmp_path / "elsewhere"))
    assert shared_data.alsa_file_mic() is None  # named explicitly and absent: skip, never guess
    # these variables are the tests' (and bench's), not configuration keys: the daemon must not refuse them
    env = {"EMOTRACK_SHARED": "/x", "EMOTRACK_ALSA_FILE_MIC": "/x/y", "EMOTRACK_CORPORA": "/x/c"}
    assert apply_env(EmotrackConfig(), env) == EmotrackConfig()


def test_readme_names_every_skip_cause() -> None:
    text = " ".join((REPO / "README.md").read_text().split())
    for needle in (
        "alsa-file-mic",
        "$EMOTRACK_ALSA_FILE_MIC",
        "$EMOTRACK_SHARED",
        "$EMOTRACK_CORPORA",
        "NVIDIA GPU",
        "TensorRT",
        "mosquitto_passwd",
        "espeak-ng",
        "sox",
        "openssl",
        "systemd-analyze",
        "EMOTRACK_SOAK=1",
        "torch",
        "pyaudio",
        "matplotlib",
        "rich",
        "opensmile",
        "jinja2",
        "engines/default",
        "/proc/net/tcp",
        "git checkout",
    ):
        assert needle in text, f"README.md does not name the skip cause {needle!r}"
