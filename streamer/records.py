"""The records emotrack publishes (MQTT) and logs (JSON lines): one schema for every sink.

``seq`` is per stream and shared by window and utterance records, so a subscriber can drop
duplicates by (stream, seq) and detect gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class EmotionValues:
    """A label with its probabilities and V/A/D; any part may be absent (engine without that head)."""

    label: str | None
    scores: dict[str, float] | None
    valence: float | None
    arousal: float | None
    dominance: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "scores": None if self.scores is None else {k: round(v, 4) for k, v in self.scores.items()},
            "valence": _r(self.valence),
            "arousal": _r(self.arousal),
            "dominance": _r(self.dominance),
        }


@dataclass(frozen=True, slots=True)
class EngineRef:
    name: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """One scored window: raw engine output and the smoothed track after it."""

    stream: str
    seq: int
    utterance: int
    window: int
    start: float  # audio time, seconds since the stream started
    end: float
    wall_time: float  # unix seconds at the window's end as captured, or when scored if earlier
    raw: EmotionValues
    smoothed: EmotionValues
    engine: EngineRef

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "window",
            "schema": SCHEMA_VERSION,
            "stream": self.stream,
            "seq": self.seq,
            "utterance": self.utterance,
            "window": self.window,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "wall_time": round(self.wall_time, 3),
            "raw": self.raw.to_dict(),
            "smoothed": self.smoothed.to_dict(),
            "engine": self.engine.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class UtteranceRecord:
    """Summary of one VAD segment, published at its end."""

    stream: str
    seq: int
    utterance: int
    start: float
    end: float
    wall_time: float
    windows: int
    dropped: int  # windows of this utterance lost under overload
    summary: EmotionValues  # mean probabilities / V/A/D over the utterance's windows
    engine: EngineRef

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "utterance",
            "schema": SCHEMA_VERSION,
            "stream": self.stream,
            "seq": self.seq,
            "utterance": self.utterance,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration": round(self.end - self.start, 3),
            "wall_time": round(self.wall_time, 3),
            "windows": self.windows,
            "dropped": self.dropped,
            "summary": self.summary.to_dict(),
            "engine": self.engine.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class StateRecord:
    """Retained current state of a stream (what a late subscriber sees first)."""

    stream: str
    seq: int
    status: str  # "speaking" | "silent" | "no-speech" (sound, but not speech) | "ended"
    audio_time: float
    wall_time: float
    current: EmotionValues
    engine: EngineRef

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "state",
            "schema": SCHEMA_VERSION,
            "stream": self.stream,
            "seq": self.seq,
            "status": self.status,
            "audio_time": round(self.audio_time, 3),
            "wall_time": round(self.wall_time, 3),
            "current": self.current.to_dict(),
            "engine": self.engine.to_dict(),
        }


Record = WindowRecord | UtteranceRecord | StateRecord


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
