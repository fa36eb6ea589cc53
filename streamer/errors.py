"""The base of errors a user can cause outside the sinks and sources (bad log file, bad flag value).

``streamer.cli`` prints any ``EmotrackError`` as one line and exits 1, without a traceback.
"""

from __future__ import annotations


class EmotrackError(Exception):
    """A user-fixable problem; the message is one line naming the offending thing."""
