"""`emotrack baseline`: thin wrapper over `training.commands` (needs the [train] extra only when it runs)."""

from __future__ import annotations

import argparse
from typing import Any

from streamer.commands._training import lazy, run_training_command


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from training.commands import add_baseline_parser  # argparse only: no torch import

    return add_baseline_parser(sub)


def run(args: argparse.Namespace) -> int:
    return run_training_command(args, lazy("training.commands", "run_baseline"))
