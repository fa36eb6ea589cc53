"""Per-speaker summaries of conversation logs: time per emotion, mean V/A/D, turning points.

The smoothed label is a step function over speech time: inside an utterance, each window's label
holds from the previous window's end (or the utterance start) to its own end, and the last one to
the utterance end. Pauses between utterances count for no emotion. The same segments draw the
label ribbon of ``emotrack plot``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from streamer.convlog import Conversation
from streamer.records import WindowRecord


@dataclass(frozen=True, slots=True)
class LabelSegment:
    start: float
    end: float
    label: str | None
    utterance: int


@dataclass(frozen=True, slots=True)
class TurningPoint:
    time: float  # audio seconds: the end of the window at which the smoothed label changed
    before: str | None
    after: str | None


@dataclass(slots=True)
class StreamSummary:
    stream: str
    session: str | None
    engine: str | None
    duration_s: float
    speech_s: float
    utterances: int
    windows: int
    dropped: int
    time_per_label: dict[str, float] = field(default_factory=dict)
    mean_raw: dict[str, float | None] = field(default_factory=dict)
    mean_smoothed: dict[str, float | None] = field(default_factory=dict)
    dominant: str | None = None
    turning_points: list[TurningPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "session": self.session,
            "engine": self.engine,
            "duration_s": round(self.duration_s, 3),
            "speech_s": round(self.speech_s, 3),
            "utterances": self.utterances,
            "windows": self.windows,
            "dropped": self.dropped,
            "dominant": self.dominant,
            "time_per_label": {k: round(v, 3) for k, v in self.time_per_label.items()},
            "mean_raw": {k: _r(v) for k, v in self.mean_raw.items()},
            "mean_smoothed": {k: _r(v) for k, v in self.mean_smoothed.items()},
            "turning_points": [
                {"time": round(t.time, 3), "from": t.before, "to": t.after} for t in self.turning_points
            ],
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _by_utterance(conv: Conversation) -> OrderedDict[int, list[WindowRecord]]:
    groups: OrderedDict[int, list[WindowRecord]] = OrderedDict()
    for w in conv.windows:
        groups.setdefault(w.utterance, []).append(w)
    return groups


def label_segments(conv: Conversation) -> list[LabelSegment]:
    """The smoothed label over speech time (see the module docstring)."""
    spans = {u.utterance: (u.start, u.end) for u in conv.utterances}
    out: list[LabelSegment] = []
    for utt, windows in _by_utterance(conv).items():
        start, end = spans.get(utt, (windows[0].start, windows[-1].end))
        t = min(start, windows[0].start)
        for i, w in enumerate(windows):
            stop = max(end, w.end) if i == len(windows) - 1 else w.end
            if stop > t:
                out.append(LabelSegment(t, stop, w.smoothed.label, utt))
            t = max(t, stop)
    return out


def turning_points(conv: Conversation) -> list[TurningPoint]:
    """Times at which the smoothed (hysteresis) label changed, first label excluded."""
    out: list[TurningPoint] = []
    last: str | None = None
    for w in conv.windows:
        label = w.smoothed.label
        if label is None:
            continue
        if last is not None and label != last:
            out.append(TurningPoint(w.end, last, label))
        last = label
    return out


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def summarise(conv: Conversation) -> StreamSummary:
    segs = label_segments(conv)
    per: dict[str, float] = {}
    for s in segs:
        key = s.label or "-"
        per[key] = per.get(key, 0.0) + (s.end - s.start)
    per = dict(sorted(per.items(), key=lambda kv: -kv[1]))
    speech = sum(u.end - u.start for u in conv.utterances) or sum(s.end - s.start for s in segs)
    ws = conv.windows
    engine = conv.engine
    return StreamSummary(
        stream=conv.stream,
        session=conv.session,
        engine=None if engine is None else f"{engine.name} {engine.version}",
        duration_s=conv.duration,
        speech_s=speech,
        utterances=len(conv.utterances) or len(_by_utterance(conv)),
        windows=len(ws),
        dropped=sum(u.dropped for u in conv.utterances),
        time_per_label=per,
        mean_raw={
            "valence": _mean([w.raw.valence for w in ws]),
            "arousal": _mean([w.raw.arousal for w in ws]),
            "dominance": _mean([w.raw.dominance for w in ws]),
        },
        mean_smoothed={
            "valence": _mean([w.smoothed.valence for w in ws]),
            "arousal": _mean([w.smoothed.arousal for w in ws]),
            "dominance": _mean([w.smoothed.dominance for w in ws]),
        },
        dominant=next((k for k in per if k != "-"), None),
        turning_points=turning_points(conv),
    )


def _f(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:+.2f}"


def format_text(summaries: list[StreamSummary]) -> str:
    """A readable block per speaker."""
    blocks = []
    for s in summaries:
        lines = [
            f"{s.stream}  (session {s.session or '-'}, engine {s.engine or '-'})",
            f"  speech {s.speech_s:.1f} s of {s.duration_s:.1f} s, {s.utterances} utterance(s), "
            f"{s.windows} window(s), {s.dropped} dropped",
        ]
        if s.time_per_label:
            total = sum(s.time_per_label.values()) or 1.0
            lines.append("  time per emotion:")
            for label, t in s.time_per_label.items():
                lines.append(f"    {label:<12} {t:7.1f} s  {100 * t / total:5.1f} %")
        m = s.mean_raw
        lines.append(
            f"  mean V/A/D (raw): valence {_f(m['valence'])}  arousal {_f(m['arousal'])}  "
            f"dominance {_f(m['dominance'])}"
        )
        if s.turning_points:
            lines.append(f"  turning points ({len(s.turning_points)}):")
            for tp in s.turning_points:
                lines.append(f"    {tp.time:8.2f} s  {tp.before} -> {tp.after}")
        else:
            lines.append("  turning points: none")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
