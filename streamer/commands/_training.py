"""Shared glue for the training commands: `training` is an optional extra, imported only when run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

MISSING = "training needs the [train] extra: pip install 'emotrack[train]'"
_TRAIN_DEPS = {"torch", "safetensors", "onnx", "onnxscript", "tqdm", "transformers", "matplotlib"}


def run_training_command(args: argparse.Namespace, runner: Callable[[argparse.Namespace], int]) -> int:
    """Call `runner`; a missing [train] dependency becomes one line on stderr and exit code 1."""
    try:
        return runner(args)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in _TRAIN_DEPS:
            print(f"emotrack: error: {MISSING} ({e.name} is not installed)", file=sys.stderr)
            return 1
        raise


def lazy(module: str, attr: str) -> Callable[[argparse.Namespace], int]:
    """A runner that imports `module.attr` at call time (so `emotrack --help` never imports torch)."""

    def call(args: argparse.Namespace) -> int:
        import importlib

        fn: Any = getattr(importlib.import_module(module), attr)
        return int(fn(args))

    return call
