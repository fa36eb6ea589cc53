"""`emotrack build-trt`: thin wrapper over `training.cli` (needs the [train] extra only when it runs)."""

from __future__ import annotations

import argparse
from typing import Any

from streamer.commands._training import lazy, run_training_command

NAME = "build-trt"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from training.cli import add_build_trt_parser  # argparse only: no torch import

    return add_build_trt_parser(sub)


def run(args: argparse.Namespace) -> int:
    return run_training_command(args, lazy("training.cli", "run_build_trt"))
