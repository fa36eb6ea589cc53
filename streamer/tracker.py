"""Per-stream record building: segment events + engine scores -> window, utterance and state records.

One tracker per stream owns the stream's smoother and its ``seq`` counter (shared by window and
utterance records, so subscribers can de-duplicate and detect gaps by (stream, seq)).

A record's ``wall_time`` is the Unix time its audio ends, as captured, or the moment the record is
built if that is earlier: audio that arrives faster than real time (an unpaced file, a client pushing
a recording) is timed from its first sample on, which would put its later windows in the future.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamer.centring import CentringConfig, StreamCentring
from streamer.messages import SAMPLE_RATE, Scores, SpeechWindow, UtteranceEnded
from streamer.records import EmotionValues, EngineRef, StateRecord, UtteranceRecord, WindowRecord
from streamer.smoothing import Smoother, SmoothingConfig

_MAX_OPEN_UTTERANCES = 16  # accumulators kept for utterances whose end has not arrived yet


@dataclass(slots=True)
class _Accumulator:
    """Sums over an utterance's scored windows (for its summary) and the windows it lost."""

    scored: int = 0
    dropped: int = 0
    rejected: int = 0  # not speech (window gate): not scored, not an emotion
    prob_sum: dict[str, float] = field(default_factory=dict)
    prob_n: int = 0
    vad_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    vad_n: int = 0

    def add(self, scores: Scores) -> None:
        self.scored += 1
        if scores.probabilities is not None:
            for k, p in scores.probabilities.items():
                self.prob_sum[k] = self.prob_sum.get(k, 0.0) + float(p)
            self.prob_n += 1
        if scores.vad is not None:
            for i in range(3):
                self.vad_sum[i] += float(scores.vad[i])
            self.vad_n += 1

    def summary(self) -> EmotionValues:
        probs = None
        label = None
        if self.prob_n:
            probs = {k: s / self.prob_n for k, s in self.prob_sum.items()}
            label = max(probs, key=probs.__getitem__)
        if not self.vad_n:
            return EmotionValues(label=label, scores=probs, valence=None, arousal=None, dominance=None)
        v, a, d = (s / self.vad_n for s in self.vad_sum)
        return EmotionValues(label=label, scores=probs, valence=v, arousal=a, dominance=d)


@dataclass(slots=True)
class TrackerStats:
    windows_scored: int = 0
    windows_dropped: int = 0
    utterances: int = 0


def raw_values(scores: Scores) -> EmotionValues:
    """An engine output as record values (label = argmax of the probabilities)."""
    v = scores.vad
    return EmotionValues(
        label=scores.label,
        scores=None
        if scores.probabilities is None
        else {k: float(p) for k, p in scores.probabilities.items()},
        valence=None if v is None else float(v[0]),
        arousal=None if v is None else float(v[1]),
        dominance=None if v is None else float(v[2]),
    )


class StreamTracker:
    """Consumes one stream's windows (with scores, in order) and utterance ends; builds records."""

    def __init__(
        self,
        stream_id: str,
        engine_ref: EngineRef,
        labels: Sequence[str] | None,
        has_vad: bool,
        smoothing: SmoothingConfig,
        start_seq: int = 0,
        centring: CentringConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if start_seq < 0:
            raise ValueError(f"start_seq must be >= 0 (got {start_seq})")
        self.stream_id = stream_id
        self.engine_ref = engine_ref
        self._clock = clock
        self.smoother = Smoother(labels, has_vad, smoothing)
        self.centring = (
            StreamCentring(len(labels), centring)
            if centring is not None and centring.enabled and labels
            else None
        )
        self._heard_to: float | None = None  # audio time the stream's scored windows reach
        self.stats = TrackerStats()
        self._next_seq = start_seq
        self._open: OrderedDict[int, _Accumulator] = OrderedDict()
        self._last_utterance: int | None = None  # utterance of the last scored window

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def on_window(self, window: SpeechWindow, scores: Scores | None) -> WindowRecord | None:
        """A scored window becomes a record; ``None`` scores (dropped under overload) are counted."""
        acc = self._accumulator(window.utterance_id)
        if scores is None:
            acc.dropped += 1
            self.stats.windows_dropped += 1
            return None
        if self._last_utterance is not None and window.utterance_id != self._last_utterance:
            self.smoother.silence(window.start_s)  # the pause between utterances
        self._last_utterance = window.utterance_id
        adapted = self._centre(window, scores)
        acc.add(adapted)
        self.stats.windows_scored += 1
        smoothed = self.smoother.update(adapted, window.end_s)
        return WindowRecord(
            stream=self.stream_id,
            seq=self._take_seq(),
            utterance=window.utterance_id,
            window=window.index,
            start=window.start_s,
            end=window.end_s,
            wall_time=self._wall(window.wall_time),
            raw=raw_values(scores),
            smoothed=smoothed.as_values(),
            engine=self.engine_ref,
        )

    def on_nonspeech(self, window: SpeechWindow) -> None:
        """A window the gate rejected: no record, no smoothing, no centring; only counted."""
        self._accumulator(window.utterance_id).rejected += 1

    def is_nonspeech(self, utterance_id: int) -> bool:
        """True when every window of the utterance so far was rejected as not speech (a blip of
        noise, a tone): it is no utterance, and ``forget`` drops it without a record."""
        acc = self._open.get(utterance_id)
        return acc is not None and acc.rejected > 0 and acc.scored == 0 and acc.dropped == 0

    def forget(self, utterance_id: int) -> None:
        self._open.pop(utterance_id, None)

    def on_utterance_end(self, ev: UtteranceEnded) -> UtteranceRecord:
        """Summary of the utterance: mean probabilities and V/A/D over its scored windows."""
        acc = self._open.pop(ev.utterance_id, None) or _Accumulator()
        self.stats.utterances += 1
        return UtteranceRecord(
            stream=self.stream_id,
            seq=self._take_seq(),
            utterance=ev.utterance_id,
            start=ev.start_sample / SAMPLE_RATE,
            end=ev.end_sample / SAMPLE_RATE,
            wall_time=self._wall(ev.wall_time),
            windows=max(ev.n_windows - acc.rejected, acc.scored + acc.dropped),
            dropped=acc.dropped,
            summary=acc.summary(),
            engine=self.engine_ref,
        )

    def state(self, status: str, audio_time: float, wall_time: float) -> StateRecord:
        """The stream's current smoothed state; when not speaking the silence policy is applied first.

        ``seq`` is that of the latest window/utterance record (-1 before the first).
        """
        if status not in ("speaking", "silent", "no-speech", "ended"):
            raise ValueError(f"state status must be speaking, silent, no-speech or ended (got {status!r})")
        if status == "speaking":
            current = self.smoother.current(audio_time)
        else:
            current = self.smoother.silence(audio_time)
        return StateRecord(
            stream=self.stream_id,
            seq=self._next_seq - 1,
            status=status,
            audio_time=audio_time,
            wall_time=self._wall(wall_time),
            current=current.as_values(),
            engine=self.engine_ref,
        )

    def _wall(self, audio_end: float) -> float:
        """Never a time in the future (see the module docstring)."""
        return min(audio_end, self._clock())

    def _centre(self, window: SpeechWindow, scores: Scores) -> Scores:
        """The scores centred on the stream's earlier windows (as they are when centring is off).

        Each window teaches the reference only the audio it adds (overlapping windows count once), and
        a long pause before it may start the reference again.
        """
        heard_to, self._heard_to = self._heard_to, max(window.end_s, self._heard_to or 0.0)
        labels = self.smoother.labels
        if self.centring is None or scores.probabilities is None or labels is None:
            return scores
        if set(scores.probabilities) != set(labels):
            return scores  # the smoother reports the mismatch in one line
        if heard_to is not None and window.start_s > heard_to:
            self.centring.silence(window.start_s - heard_to)
        new_audio = window.end_s - (window.start_s if heard_to is None else max(window.start_s, heard_to))
        probs = [scores.probabilities[k] for k in labels]
        centred = self.centring.adapt_probabilities(probs, max(new_audio, 0.0))
        return Scores({k: float(p) for k, p in zip(labels, centred, strict=True)}, scores.vad)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _accumulator(self, utterance_id: int) -> _Accumulator:
        acc = self._open.get(utterance_id)
        if acc is None:
            acc = self._open[utterance_id] = _Accumulator()
            while len(self._open) > _MAX_OPEN_UTTERANCES:  # an end that never came: forget the oldest
                self._open.popitem(last=False)
        return acc
