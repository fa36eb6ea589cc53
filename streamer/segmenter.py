"""Speech segmentation: VAD onsets/offsets plus sliding windows over each utterance.

Windows are scheduled in samples from the utterance onset (``window_s`` long, every ``hop_s``) and
emitted as soon as the VAD has judged audio up to their end while the utterance is open (speech, or
the ``end_ms`` hangover before the VAD decides that speech ended). So every window goes out as soon as
its last sample arrives: the first one ``window_s`` after the padded onset (``pad_ms`` before the
first voiced frame), and an utterance's last one when the VAD decides its end; a window may hold up
to ``end_ms - pad_ms`` of hangover after the utterance's padded end. The set of windows depends only
on the audio, never on chunk sizes. Only the audio the next window (or the onset padding) can still
need is kept, so memory stays bounded whatever the utterance length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamer.messages import (
    SAMPLE_RATE,
    AudioChunk,
    FloatArray,
    SegmentEvent,
    SpeechWindow,
    UtteranceEnded,
    UtteranceStarted,
)
from streamer.vad import SpeechOnset, VadConfig, VoiceActivity

_SLICE = SAMPLE_RATE // 4  # big chunks are processed in slices of this many samples (bounds memory)


class _WindowSpec(Protocol):
    @property
    def window_s(self) -> float: ...
    @property
    def hop_s(self) -> float: ...
    @property
    def min_window_s(self) -> float: ...
    @property
    def max_window_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Sliding-window schedule (defaults mirror the engine manifest).

    ``min_segment_s``: an utterance shorter than a window is scored whole if at least this long
    (the inference stage pads it to ``min_window_s``); an utterance's tail left uncovered by its last
    full window gets a final window (the last ``window_s`` of the utterance) if at least this long.
    """

    window_s: float = 2.0
    hop_s: float = 0.5
    min_window_s: float = 0.5
    max_window_s: float = 8.0
    min_segment_s: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 < self.hop_s <= self.window_s:
            raise ValueError(f"windows.hop_s must be in (0, window_s] (got {self.hop_s!r})")
        if not 0.0 < self.window_s <= self.max_window_s:
            raise ValueError(f"windows.window_s must be in (0, max_window_s] (got {self.window_s!r})")
        if not 0.0 < self.min_window_s <= self.window_s:
            raise ValueError(f"windows.min_window_s must be in (0, window_s] (got {self.min_window_s!r})")
        if not 0.0 < self.min_segment_s <= self.window_s:
            raise ValueError(f"windows.min_segment_s must be in (0, window_s] (got {self.min_segment_s!r})")

    @classmethod
    def from_manifest(cls, manifest: _WindowSpec, min_segment_s: float = 0.25) -> WindowConfig:
        """Take the schedule an engine was built for (anything with the four manifest fields)."""
        return cls(
            window_s=float(manifest.window_s),
            hop_s=float(manifest.hop_s),
            min_window_s=float(manifest.min_window_s),
            max_window_s=float(manifest.max_window_s),
            min_segment_s=min(min_segment_s, float(manifest.window_s)),
        )


@dataclass(slots=True)
class SegmenterStats:
    utterances: int = 0
    windows: int = 0
    short_dropped: int = 0  # utterances shorter than min_segment_s (no window scored)
    gaps: int = 0  # discontinuities in start_sample (audio lost upstream)
    overlap_samples: int = 0  # samples received twice and ignored


class SampleBuffer:
    """The recent audio of one stream, addressed by absolute sample index.

    Appends write after the live region; forgetting only moves an offset, and the live region is
    moved to the front only when the array is full, so each sample is copied O(1) times on average.
    """

    def __init__(self, capacity: int, start_sample: int = 0) -> None:
        self._data = np.zeros(max(capacity, 1), dtype=np.float32)
        self._start = start_sample  # absolute index of _data[_off]
        self._off = 0
        self._len = 0

    @property
    def start(self) -> int:
        return self._start

    @property
    def end(self) -> int:
        return self._start + self._len

    @property
    def capacity(self) -> int:
        return len(self._data)

    def reset(self, start_sample: int) -> None:
        self._start, self._off, self._len = start_sample, 0, 0

    def append(self, samples: FloatArray) -> None:
        n = len(samples)
        if self._off + self._len + n > len(self._data):
            if self._len + n > len(self._data) // 2:  # live audio outgrew the array (caller keeps too much)
                grown = np.zeros(2 * (self._len + n), dtype=np.float32)
                grown[: self._len] = self._data[self._off : self._off + self._len]
                self._data = grown
            else:
                self._data[: self._len] = self._data[self._off : self._off + self._len]
            self._off = 0
        w = self._off + self._len
        self._data[w : w + n] = samples
        self._len += n

    def discard_before(self, sample: int) -> None:
        """Forget audio before ``sample``."""
        drop = min(max(sample - self._start, 0), self._len)
        self._start += drop
        self._off += drop
        self._len -= drop

    def copy(self, start: int, end: int) -> FloatArray:
        if start < self._start or end > self.end or end < start:
            raise IndexError(f"samples [{start}, {end}) not buffered (have [{self._start}, {self.end}))")
        a = self._off + start - self._start
        return self._data[a : a + end - start].copy()


class Segmenter:
    """One stream's VAD + windowing: ``feed`` chunks in order, ``finish`` at the end of the stream."""

    def __init__(self, stream_id: str, vad: VadConfig, windows: WindowConfig) -> None:
        self.stream_id = stream_id
        self.vad_cfg = vad
        self.windows = windows
        self.stats = SegmenterStats()
        self._vad = VoiceActivity(vad)
        self._win = round(windows.window_s * SAMPLE_RATE)
        self._hop = round(windows.hop_s * SAMPLE_RATE)
        self._min_seg = round(windows.min_segment_s * SAMPLE_RATE)
        frame = vad.frame_samples
        self._keep_silent = vad.pad_samples + vad.start_frames * frame + frame
        self._keep_speech = self._win + vad.end_frames * frame + frame
        capacity = max(self._keep_silent, self._keep_speech) + _SLICE + 2 * frame
        self._buf = SampleBuffer(2 * capacity)
        self._started = False
        self._fed_end = 0
        self._anchor = (0, 0.0)  # (sample, wall time) of the latest chunk
        self._next_utt = 0
        self._next_window = 0
        self._utt: int | None = None  # open utterance id
        self._utt_start = 0
        self._utt_windows = 0

    @property
    def in_utterance(self) -> bool:
        return self._utt is not None

    @property
    def buffered_samples(self) -> int:
        return self._buf.end - self._buf.start

    def wall_at(self, sample: int) -> float:
        """Wall time of ``sample``: the latest chunk's wall time plus the sample offset."""
        s0, w0 = self._anchor
        return w0 + (sample - s0) / SAMPLE_RATE

    def feed(self, chunk: AudioChunk) -> list[SegmentEvent]:
        """Consume one chunk (any size); returns the segment events it completes, in order."""
        if chunk.stream_id != self.stream_id:
            raise ValueError(f"segmenter for stream {self.stream_id!r} got a chunk of {chunk.stream_id!r}")
        out: list[SegmentEvent] = []
        samples, start = chunk.samples, chunk.start_sample
        if not self._started:
            self._started = True
            self._restart(start)
        elif start > self._fed_end:  # audio lost upstream: close what was open, start afresh
            self.stats.gaps += 1
            self._close_at_end(out)
            self._restart(start)
        elif start < self._fed_end:  # repeated audio: keep only the new part
            skip = self._fed_end - start
            self.stats.overlap_samples += min(skip, len(samples))
            if skip >= len(samples):
                return out
            samples, start = samples[skip:], self._fed_end
        self._anchor = (chunk.start_sample, chunk.wall_time)
        samples = np.asarray(samples, dtype=np.float32)
        for i in range(0, len(samples), _SLICE):
            self._process(samples[i : i + _SLICE], out)
        return out

    def finish(self, wall_time: float) -> list[SegmentEvent]:
        """End of stream: close an open utterance (its windows and UtteranceEnded)."""
        out: list[SegmentEvent] = []
        if not self._started:
            self._anchor = (0, wall_time)
        self._close_at_end(out)
        return out

    def _restart(self, start: int) -> None:
        self._vad.reset(start)
        self._buf.reset(start)
        self._fed_end = start

    def _process(self, samples: FloatArray, out: list[SegmentEvent]) -> None:
        self._buf.append(samples)
        self._fed_end += len(samples)
        for ev in self._vad.feed(samples):
            if isinstance(ev, SpeechOnset):
                self._open(ev.start_sample, out)
            else:
                self._emit_windows(ev.decided_at, out)
                self._close(ev.end_sample, ev.decided_at, out)
        if self._utt is not None:
            self._emit_windows(self._vad.position, out)
        self._trim()

    def _close_at_end(self, out: list[SegmentEvent]) -> None:
        ev = self._vad.flush(self._fed_end)
        if ev is not None and self._utt is not None:
            self._emit_windows(ev.decided_at, out)
            self._close(ev.end_sample, ev.decided_at, out)

    def _open(self, start: int, out: list[SegmentEvent]) -> None:
        self._utt = self._next_utt
        self._next_utt += 1
        self._utt_start = start
        self._utt_windows = 0
        self.stats.utterances += 1
        out.append(UtteranceStarted(self.stream_id, self._utt, start, self.wall_at(start)))

    def _emit_windows(self, limit: int, out: list[SegmentEvent]) -> None:
        """Every scheduled full window of the open utterance that ends by ``limit``."""
        while True:
            start = self._utt_start + self._utt_windows * self._hop
            if start + self._win > limit:
                return
            self._window(start, start + self._win, out)

    def _window(self, start: int, end: int, out: list[SegmentEvent]) -> None:
        assert self._utt is not None
        out.append(
            SpeechWindow(
                stream_id=self.stream_id,
                utterance_id=self._utt,
                index=self._next_window,
                start_sample=start,
                end_sample=end,
                samples=self._buf.copy(start, end),
                wall_time=self.wall_at(end),
            )
        )
        self._next_window += 1
        self._utt_windows += 1
        self.stats.windows += 1

    def _close(self, end: int, decided: int, out: list[SegmentEvent]) -> None:
        """Speech ended at ``end`` (padding included), as the VAD decided once it had judged audio up
        to ``decided``. Speech not covered yet gets one last window that ends at ``decided``: that audio
        is in hand now, so the window goes out without further delay (it holds at most
        ``end_ms - pad_ms`` of the hangover after the padded end)."""
        assert self._utt is not None
        start = self._utt_start
        if self._utt_windows == 0:
            if end - start >= self._min_seg:
                self._window(start, decided, out)  # short utterance: scored whole, padded downstream
            else:
                self.stats.short_dropped += 1
        elif end - (start + (self._utt_windows - 1) * self._hop + self._win) >= self._min_seg:
            # the tail, with a full window of context (a full window exists, so decided >= start + win)
            self._window(decided - self._win, decided, out)
        out.append(
            UtteranceEnded(self.stream_id, self._utt, start, end, self.wall_at(end), self._utt_windows)
        )
        self._utt = None

    def _trim(self) -> None:
        pos = self._vad.position
        if self._utt is None:
            keep_from = pos - self._keep_silent
        else:
            next_start = self._utt_start + self._utt_windows * self._hop
            keep_from = max(self._utt_start, min(next_start, pos - self._keep_speech))
        self._buf.discard_before(keep_from)
