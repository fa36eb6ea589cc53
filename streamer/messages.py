"""Typed messages that flow between pipeline stages.

Every timestamp in audio time is derived from sample counts since the stream started (at the
pipeline rate, 16 kHz), never from the wall clock; wall times are carried alongside for humans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono float32 PCM at 16 kHz from one stream; ``start_sample`` counts from the stream start."""

    stream_id: str
    samples: FloatArray
    start_sample: int
    wall_time: float  # unix time of the chunk's first sample (capture or read time)

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A source stream finished (end of file, client gone, device lost)."""

    stream_id: str
    total_samples: int
    reason: str = "eof"  # "eof" | "disconnected" | "device-lost" | "error: ..."


SourceEvent = AudioChunk | StreamEnded


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    """VAD decided speech began (onset includes the configured padding)."""

    stream_id: str
    utterance_id: int
    start_sample: int
    wall_time: float


@dataclass(frozen=True, slots=True)
class SpeechWindow:
    """A window of speech to score. ``samples`` may be shorter than the engine window (short utterance)."""

    stream_id: str
    utterance_id: int
    index: int  # window number within the stream, from 0
    start_sample: int
    end_sample: int
    samples: FloatArray
    wall_time: float  # wall time at the window's end
    speech: bool = True  # the window gate's verdict (the pipeline's): False = tone, noise... (not scored)

    @property
    def start_s(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end_sample / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    """VAD decided speech ended; emitted after the utterance's last window."""

    stream_id: str
    utterance_id: int
    start_sample: int
    end_sample: int
    wall_time: float
    n_windows: int


SegmentEvent = UtteranceStarted | SpeechWindow | UtteranceEnded


@dataclass(frozen=True, slots=True)
class Scores:
    """What the engine said about one window: class probabilities and/or V/A/D in [-1, 1]."""

    probabilities: dict[str, float] | None
    vad: tuple[float, float, float] | None  # valence, arousal, dominance

    @property
    def label(self) -> str | None:
        if not self.probabilities:
            return None
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    window: SpeechWindow
    scores: Scores | None  # None when the window was dropped under overload


@dataclass(slots=True)
class Counters:
    """Per-daemon counters reported on the status topic and by bench."""

    windows_scored: int = 0
    windows_dropped: int = 0
    chunks_dropped: int = 0
    records_dropped: int = 0
    batches: int = 0
    extra: dict[str, int] = field(default_factory=dict)
