"""`emotrack evaluate-track`: a thin wrapper over `training.track_cli` (the [train] extra runs it)."""

from __future__ import annotations

import argparse
from typing import Any

from streamer.commands._training import lazy, run_training_command

HELP = "score the published track on joined streams of unseen speakers"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from training.track_cli import add_parser as add  # argparse only: no torch import

    return add(sub)


def run(args: argparse.Namespace) -> int:
    return run_training_command(args, lazy("training.track_cli", "run"))
