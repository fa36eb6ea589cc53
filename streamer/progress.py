"""Progress bars for long CLI work: on stderr, only for a terminal and more than one item.

Results go to stdout (often JSON lines a script parses), so a bar must never reach stdout, and it must
stay silent when stderr is a file or a pipe (logs, CI) where carriage-return redraws are noise.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from tqdm import tqdm


def progress_bar(
    total: int, desc: str, *, enabled: bool = True, unit: str = "file", stream: TextIO | None = None
) -> tqdm:
    """A tqdm bar on `stream` (default stderr), disabled unless enabled, total > 1 and a TTY."""
    out = sys.stderr if stream is None else stream
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):  # closed or exotic stream: no bar
        tty = False
    show = enabled and total > 1 and tty
    # a pty that reports a 0x0 size (script, some CI runners) would make tqdm hide the bar
    cols, rows = _size(out) if show else (0, 0)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=out,
        disable=not show,
        dynamic_ncols=cols > 0,
        ncols=None if cols > 0 else 80,
        nrows=None if rows > 0 else 24,
    )


def _size(stream: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 0, 0
    return size.columns, size.lines
