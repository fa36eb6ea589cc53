"""Engine errors: one exception type whose one-line message names the offending file."""

from __future__ import annotations


class EngineError(Exception):
    """A bad, missing or unusable engine; the message names the file and what is wrong with it."""
