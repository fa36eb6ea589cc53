"""Shared fixtures. Area-specific fixtures live in tests/fixtures_*.py and are registered here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.shared_data import CORPORA_MISSING, corpora_root

pytest_plugins: list[str] = ["tests.fixtures_mqtt", "tests.fixtures_engine", "tests.fixtures_training"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    root = corpora_root()
    if root is None:
        pytest.skip(CORPORA_MISSING)
    return root


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real synthetic speech (espeak-ng) with silence around it, 16 kHz mono int16."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    d = tmp_path_factory.mktemp("speech")
    raw = d / "raw.wav"
    text = "Hello there. I am really happy to see you today, this is wonderful news for all of us."
    subprocess.run(["espeak-ng", "-w", str(raw), "-s", "150", text], check=True, capture_output=True)
    import soxr

    x, sr = sf.read(raw, dtype="float32")
    x = soxr.resample(x, sr, 16000).astype(np.float32)
    sil = np.zeros(16000, dtype=np.float32)
    out = d / "speech16k.wav"
    sf.write(out, np.concatenate([sil, x, sil, x, sil]), 16000, subtype="PCM_16")
    return out
