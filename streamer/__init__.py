"""emotrack streamer: the real-time speech emotion tracking daemon and its CLI."""

__version__ = "0.1.0"
