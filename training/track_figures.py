"""Figures of the published track on rendered streams (``training.track_streams``).

What a subscriber sees is a step function of audio time: each window record, published at its end, holds
until the next one. Per clip, over its span (its speech onset up to the next clip's onset):
- ``raw``: the label of the engine's own output that held longest;
- ``published``: the ``smoothed`` label that held longest;
- ``summary``: the argmax of the utterance summaries' scores, weighted by their overlap with the clip.
UA is four-class unweighted accuracy over the scored clips (a clip with no label at all counts as wrong).

Lag: at each emotion change (a scored clip after a clip of another emotion) that the raw output follows
within the clip's span, the time from the clip's speech onset to the first window end at which the
published label is the new emotion (0 if it already was); never, within the span, counts as infinite.
Switches per minute: changes of the published label between consecutive windows on steady held speech,
each held run from 4 s after its first speech onset (the time a switch may take, p90) to its end.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamer.records import UtteranceRecord, WindowRecord
from training.track_streams import SCORED, ClipSpan, is_change

SETTLE_S = 4.0
Step = list[tuple[float, int]]  # (from time, label index or -1), increasing times


def steps(windows: Sequence[WindowRecord], which: str) -> Step:
    """The label a subscriber holds from each window's end on (``which``: raw or smoothed)."""
    out: Step = []
    for w in sorted(windows, key=lambda w: (w.end, w.seq)):
        label = (w.raw if which == "raw" else w.smoothed).label
        out.append((w.end, SCORED.index(label) if label in SCORED else -1))
    return out


def held_longest(step: Step, start: float, end: float) -> int:
    """The label held for the most time in [start, end) (-1 if none was shown at all)."""
    time = np.zeros(len(SCORED))
    j = max(bisect.bisect_right(step, (start, math.inf)) - 1, 0)  # the step shown at ``start``
    for k in range(j, len(step)):
        t, label = step[k]
        if t >= end:
            break
        t_next = step[k + 1][0] if k + 1 < len(step) else math.inf
        overlap = min(end, t_next) - max(start, t)
        if overlap > 0 and label >= 0:
            time[label] += overlap
    return int(np.argmax(time)) if time.any() else -1


def first_at(step: Step, label: int, start: float, end: float) -> float:
    """Seconds from ``start`` until the step shows ``label`` (0 if it already does); inf if not before end."""
    shown = [lab for t, lab in step if t <= start]
    if shown and shown[-1] == label:
        return 0.0
    for t, lab in step:
        if start < t < end and lab == label:
            return t - start
    return math.inf


def summary_label(utterances: Sequence[UtteranceRecord], start: float, end: float) -> int:
    total = np.zeros(len(SCORED))
    for u in utterances:
        overlap = min(end, u.end) - max(start, u.start)
        scores = u.summary.scores
        if overlap > 0 and scores is not None and all(k in scores for k in SCORED):
            total += overlap * np.array([scores[k] for k in SCORED])
    return int(np.argmax(total)) if total.any() else -1


@dataclass
class StreamOutcome:
    """Per-clip predictions, lags and switch counts of one stream."""

    truth: list[int]
    raw: list[int]
    published: list[int]
    summary: list[int]
    lags: list[float]
    raw_lags: list[float]
    switches: int = 0
    raw_switches: int = 0
    steady_s: float = 0.0


def spans_to(spans: Sequence[ClipSpan], i: int, end_s: float) -> float:
    return spans[i + 1].onset if i + 1 < len(spans) else end_s


def stream_outcome(
    spans: Sequence[ClipSpan],
    windows: Sequence[WindowRecord],
    utterances: Sequence[UtteranceRecord],
    end_s: float,
) -> StreamOutcome:
    raw, pub = steps(windows, "raw"), steps(windows, "smoothed")
    out = StreamOutcome([], [], [], [], [], [])
    for i, c in enumerate(spans):
        until = spans_to(spans, i, end_s)
        if c.truth >= 0:
            out.truth.append(c.truth)
            out.raw.append(held_longest(raw, c.onset, until))
            out.published.append(held_longest(pub, c.onset, until))
            out.summary.append(summary_label(utterances, c.start, c.end))
        if is_change(spans, i) and math.isfinite(first_at(raw, c.truth, c.onset, until)):
            out.lags.append(first_at(pub, c.truth, c.onset, until))
            out.raw_lags.append(first_at(raw, c.truth, c.onset, until))
    for run in sorted({c.run for c in spans if c.run >= 0}):
        idx = [i for i, c in enumerate(spans) if c.run == run]
        lo, hi = spans[idx[0]].onset + SETTLE_S, spans_to(spans, idx[-1], end_s)
        if hi > lo:
            out.steady_s += hi - lo
            out.switches += count_switches(pub, lo, hi)
            out.raw_switches += count_switches(raw, lo, hi)
    return out


def count_switches(step: Step, start: float, end: float) -> int:
    inside = [label for t, label in step if start <= t < end]
    before = [label for t, label in step if t < start]
    seq = ([before[-1]] if before else []) + inside
    return sum(1 for a, b in itertools.pairwise(seq) if a != b)


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank; infinities sort last)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100.0 * len(s)) - 1)]


def _ua(y: list[int], p: list[int]) -> float:
    """Four-class UA; a clip given no label (-1) is wrong."""
    if not y:
        return math.nan
    t, q = np.array(y), np.array(p)
    return float(np.mean([np.mean(q[t == c] == c) for c in np.unique(t)]))


@dataclass(frozen=True)
class KindFigures:
    """The pooled figures of one kind of stream."""

    kind: str
    n_streams: int
    n_clips: int
    ua_raw: float
    ua_published: float
    ua_summary: float
    n_changes: int
    lag_median_s: float
    lag_p90_s: float
    raw_lag_median_s: float
    followed: float  # fraction of changes the published label followed within the clip's span
    switches_per_min: float
    raw_switches_per_min: float

    def to_dict(self) -> dict[str, object]:
        def r(x: float) -> float | str | None:
            return None if math.isnan(x) else ("inf" if math.isinf(x) else round(x, 4))

        return {k: r(v) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def pool(kind: str, outcomes: Sequence[StreamOutcome]) -> KindFigures:
    def cat(name: str) -> list[int]:
        return [x for o in outcomes for x in getattr(o, name)]

    lags = [x for o in outcomes for x in o.lags]
    steady_min = sum(o.steady_s for o in outcomes) / 60.0
    return KindFigures(
        kind=kind,
        n_streams=len(outcomes),
        n_clips=len(cat("truth")),
        ua_raw=_ua(cat("truth"), cat("raw")),
        ua_published=_ua(cat("truth"), cat("published")),
        ua_summary=_ua(cat("truth"), cat("summary")),
        n_changes=len(lags),
        lag_median_s=percentile(lags, 50),
        lag_p90_s=percentile(lags, 90),
        raw_lag_median_s=percentile([x for o in outcomes for x in o.raw_lags], 50),
        followed=sum(math.isfinite(x) for x in lags) / len(lags) if lags else math.nan,
        switches_per_min=sum(o.switches for o in outcomes) / steady_min if steady_min else math.nan,
        raw_switches_per_min=sum(o.raw_switches for o in outcomes) / steady_min if steady_min else math.nan,
    )


def figures_by_kind(outcomes: Mapping[str, Sequence[StreamOutcome]]) -> dict[str, KindFigures]:
    return {kind: pool(kind, outs) for kind, outs in outcomes.items()}
