"""Where the tests find the project's shared data (corpora, the ALSA file microphone), and why they skip.

``$EMOTRACK_SHARED`` names the shared directory (holding ``corpora/`` and ``tools/``); without it, ``shared``
beside the checkout (``../shared``). ``$EMOTRACK_CORPORA`` and ``$EMOTRACK_ALSA_FILE_MIC`` name one part
explicitly. Tests that need a part skip with ``*_MISSING``, which says how to provide it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MIC_MISSING = (
    "alsa-file-mic not found: set $EMOTRACK_ALSA_FILE_MIC (the tool) or $EMOTRACK_SHARED (a directory with "
    "tools/alsa-file-mic), or put it at ../shared/tools/alsa-file-mic beside the checkout"
)
CORPORA_MISSING = (
    "corpora not found: set $EMOTRACK_CORPORA or $EMOTRACK_SHARED (a directory with corpora/ravdess), "
    "or put them at ../shared/corpora beside the checkout"
)


def shared_dir() -> Path:
    """``$EMOTRACK_SHARED``, else ``../shared`` beside the checkout (which may not exist)."""
    env = os.environ.get("EMOTRACK_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def alsa_file_mic() -> Path | None:
    """The alsa-file-mic tool, or None when it is nowhere to be found."""
    env = os.environ.get("EMOTRACK_ALSA_FILE_MIC")
    tool = Path(env) if env else shared_dir() / "tools" / "alsa-file-mic"
    return tool if tool.is_file() else None


def corpora_root() -> Path | None:
    """``$EMOTRACK_CORPORA``, else ``<shared>/corpora``; None when it has no RAVDESS."""
    env = os.environ.get("EMOTRACK_CORPORA")
    root = Path(env) if env else shared_dir() / "corpora"
    return root if (root / "ravdess").is_dir() else None
