"""Stream sets for the published-track evaluation: one speaker's clips joined as a call would sound.

Three kinds of stream per speaker, always all three (``emotrack evaluate-track``):
- ``mixed``: the speaker's clips (at most 8 per label) in a shuffled order, so the emotion changes often;
- ``held``: each of neutral, happy, sad and angry in turn held for at least 60 s, one stream each (a speaker
  who holds one emotion from the start: what a running mean is pulled by);
- ``neutral``: mostly neutral speech with a rare emotional clip (one in five to seven), as real calls are.
Clips join with gaps of 0.5-2 s of digital silence or low noise. Where a speaker has too few clips of an
emotion to fill a run, its clips repeat (reshuffled). Calm counts as neutral speech (RAVDESS) but, like every
label outside the four, is not scored. Plans are seeded: the same corpus and seed give the same streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from training.data.dataset import SAMPLE_RATE, load_audio
from training.data.types import Utterance

Kind = Literal["mixed", "held", "neutral"]
KINDS: tuple[Kind, ...] = ("mixed", "held", "neutral")
SCORED = ("neutral", "happy", "sad", "angry")
NEUTRAL_POOL = ("neutral", "calm")  # what a neutral run or bed is made of
MIXED_PER_LABEL = 8
HELD_RUN_S = 60.0
NEUTRAL_STREAM_S = 150.0
GAP_S = (0.5, 2.0)
NOISE_RMS = 0.001  # about -60 dBFS: a quiet room between the clips
ONSET_DB = 35.0  # speech starts at the first 20 ms frame within this of the clip's loudest frame


@dataclass(frozen=True)
class PlannedClip:
    utt: Utterance
    run: int  # held streams: 0 (the whole stream is one run); -1 elsewhere


@dataclass(frozen=True)
class StreamPlan:
    """One stream to render: its clips in order and the gap after each (seconds, noise or silence)."""

    stream: str
    kind: Kind
    speaker: str
    corpus: str
    clips: tuple[PlannedClip, ...]
    gaps: tuple[float, ...]
    noisy: tuple[bool, ...]


@dataclass(frozen=True)
class ClipSpan:
    """Where a clip lies in its stream (seconds): file start, speech onset, file end; ``label`` is the
    clip's own label, ``truth`` its index in ``SCORED`` (-1: in the stream, not scored)."""

    start: float
    onset: float
    end: float
    label: str | None
    truth: int
    run: int


def speech_onset(x: np.ndarray, top_db: float = ONSET_DB) -> float:
    """Seconds from the clip's start to its first 20 ms frame within ``top_db`` of the loudest one."""
    frame = SAMPLE_RATE // 50
    n = len(x) // frame
    if n < 1:
        return 0.0
    energy = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    db = 10.0 * np.log10(energy + 1e-12)
    return float(np.flatnonzero(db >= db.max() - top_db)[0] * frame / SAMPLE_RATE)


def clip_seconds(u: Utterance) -> float:
    return float(sf.info(str(u.path)).duration)


def _neutral_like(label: str | None) -> bool:
    return label in NEUTRAL_POOL


class _Cycler:
    """Draws a pool's clips in shuffled order, reshuffling when it runs out (so short pools repeat)."""

    def __init__(self, pool: Sequence[Utterance], rng: np.random.Generator) -> None:
        if not pool:
            raise ValueError("empty clip pool")
        self.pool, self.rng, self.order = list(pool), rng, list[int]()

    def draw(self) -> Utterance:
        if not self.order:
            self.order = [int(i) for i in self.rng.permutation(len(self.pool))]
        return self.pool[self.order.pop()]


def _gaps(n: int, rng: np.random.Generator) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    gaps = tuple(round(float(g), 3) for g in rng.uniform(*GAP_S, size=n))
    return gaps, tuple(bool(b) for b in rng.random(n) < 0.5)


def plan_mixed(utts: Sequence[Utterance], rng: np.random.Generator) -> list[PlannedClip]:
    by_label: dict[str | None, list[Utterance]] = {}
    for u in utts:
        by_label.setdefault(u.label, []).append(u)
    chosen: list[Utterance] = []
    for label in sorted(by_label, key=str):
        pool = by_label[label]
        chosen += [pool[int(i)] for i in rng.permutation(len(pool))[:MIXED_PER_LABEL]]
    return [PlannedClip(chosen[int(i)], -1) for i in rng.permutation(len(chosen))]


def _pool(utts: Sequence[Utterance], label: str) -> list[Utterance]:
    return [u for u in utts if (_neutral_like(u.label) if label == "neutral" else u.label == label)]


def plan_held(
    utts: Sequence[Utterance],
    label: str,
    rng: np.random.Generator,
    seconds: dict[Path, float],
    run_s: float = HELD_RUN_S,
) -> list[PlannedClip]:
    """One emotion held for at least ``run_s`` (one run: the whole stream)."""
    out: list[PlannedClip] = []
    cycler, held = _Cycler(_pool(utts, label), rng), 0.0
    while held < run_s:
        u = cycler.draw()
        out.append(PlannedClip(u, 0))
        held += seconds[u.path] + sum(GAP_S) / 2
    return out


def plan_neutral(
    utts: Sequence[Utterance],
    rng: np.random.Generator,
    seconds: dict[Path, float],
    total_s: float = NEUTRAL_STREAM_S,
) -> list[PlannedClip]:
    bed = _Cycler(_pool(utts, "neutral"), rng)
    rare = [_Cycler(_pool(utts, label), rng) for label in SCORED[1:]]
    out: list[PlannedClip] = []
    total, k = 0.0, 0
    while total < total_s:
        for _ in range(int(rng.integers(4, 7))):
            out.append(PlannedClip(bed.draw(), -1))
            total += seconds[out[-1].utt.path]
        out.append(PlannedClip(rare[k % len(rare)].draw(), -1))
        total += seconds[out[-1].utt.path]
        k += 1
    return out


def usable(utts: Sequence[Utterance]) -> bool:
    """A speaker can make all three kinds: at least one clip of each scored emotion."""
    return all(_pool(utts, label) for label in SCORED)


def plan_speaker(utts: Sequence[Utterance], seed: int) -> list[StreamPlan]:
    """The streams of one speaker (every clip of ``utts`` is that speaker's): mixed, one held stream per
    scored emotion, mostly neutral."""
    speaker, corpus = utts[0].speaker, utts[0].corpus
    rng = np.random.default_rng([seed, *speaker.encode()])
    seconds = {u.path: clip_seconds(u) for u in utts}
    planned: list[tuple[str, Kind, list[PlannedClip]]] = [("mixed", "mixed", plan_mixed(utts, rng))]
    planned += [(f"held-{label}", "held", plan_held(utts, label, rng, seconds)) for label in SCORED]
    planned.append(("neutral", "neutral", plan_neutral(utts, rng, seconds)))
    plans = []
    for name, kind, clips in planned:
        gaps, noisy = _gaps(len(clips), rng)
        plans.append(StreamPlan(f"{name}.{speaker}", kind, speaker, corpus, tuple(clips), gaps, noisy))
    return plans


def render(plan: StreamPlan, path: Path, seed: int = 0) -> list[ClipSpan]:
    """Write the stream as 16-bit WAV; where each clip lies in it."""
    rng = np.random.default_rng([seed, *plan.stream.encode()])
    parts: list[np.ndarray] = []
    spans: list[ClipSpan] = []
    t = 0.0
    for clip, gap, noisy in zip(plan.clips, plan.gaps, plan.noisy, strict=True):
        x = load_audio(clip.utt.path)
        label = clip.utt.label
        truth = SCORED.index(label) if label in SCORED else -1
        spans.append(ClipSpan(t, t + speech_onset(x), t + len(x) / SAMPLE_RATE, label, truth, clip.run))
        n = round(gap * SAMPLE_RATE)
        pause = rng.normal(0.0, NOISE_RMS, n) if noisy else np.zeros(n)
        parts += [x, pause.astype(np.float32)]
        t += (len(x) + n) / SAMPLE_RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return spans


def stream_end(spans: Sequence[ClipSpan], total_s: float | None = None) -> float:
    """Where the stream's audio ends (the last clip's end if the file length is unknown)."""
    return spans[-1].end if total_s is None else max(total_s, spans[-1].end)


def is_change(spans: Sequence[ClipSpan], i: int) -> bool:
    """Clip ``i`` is scored and starts an emotion other than the clip before it (calm counts as neutral)."""
    if spans[i].truth < 0 or i == 0:
        return False

    def common(label: str | None) -> str | None:
        return "neutral" if _neutral_like(label) else label

    return common(spans[i - 1].label) != common(spans[i].label)


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
