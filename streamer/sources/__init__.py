"""Audio sources: files, microphones, raw PCM streams (see ``spec.py`` for the spec syntax)."""

from streamer.sources.base import AudioSource, SourceError
from streamer.sources.spec import SourceSpec, open_source, parse_spec

__all__ = ["AudioSource", "SourceError", "SourceSpec", "open_source", "parse_spec"]
