"""Score whole utterances with an engine or a torch model the way the streamer would see them.

An utterance up to `max_window_s` is scored whole; a longer one is cut into `window_s` windows every
`hop_s` (the last one aligned to the end) and its window probabilities and V/A/D are averaged, as the
streamer does over a long segment. Items of similar length are batched (cropped to the shortest of the
group, at most `bucket_s` shorter) because an engine batch needs one length per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# A scorer maps a batch [B, N] float32 to (probabilities [B, L] | None, vad [B, 3] | None).
ScoreFn = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray | None]]


@dataclass(frozen=True)
class WindowPlan:
    """Window geometry in samples (from an engine manifest or a checkpoint's settings)."""

    window: int
    hop: int
    min_len: int
    max_len: int
    padding: str = "repeat"

    @classmethod
    def from_seconds(
        cls,
        window_s: float,
        hop_s: float,
        min_window_s: float,
        max_window_s: float,
        padding: str = "repeat",
        sample_rate: int = 16000,
    ) -> WindowPlan:
        return cls(
            window=round(window_s * sample_rate),
            hop=max(round(hop_s * sample_rate), 1),
            min_len=max(round(min_window_s * sample_rate), 1),
            max_len=max(round(max_window_s * sample_rate), round(window_s * sample_rate)),
            padding=padding,
        )


def pad_to(x: np.ndarray, n: int, padding: str) -> np.ndarray:
    """Bring x up to n samples: tile it ("repeat") or append zeros."""
    if len(x) >= n:
        return x
    if padding == "repeat" and len(x) > 0:
        return np.tile(x, -(-n // len(x)))[:n]
    return np.concatenate([x, np.zeros(n - len(x), dtype=np.float32)])


def segments(x: np.ndarray, plan: WindowPlan) -> list[np.ndarray]:
    """The pieces one utterance is scored as: itself (padded to min_len) or sliding windows."""
    x = x.astype(np.float32, copy=False)
    if len(x) <= plan.max_len:
        return [pad_to(x, plan.min_len, plan.padding)]
    starts = list(range(0, len(x) - plan.window + 1, plan.hop))
    if starts[-1] != len(x) - plan.window:
        starts.append(len(x) - plan.window)
    return [x[s : s + plan.window] for s in starts]


def _buckets(lengths: Sequence[int], bucket: int, max_batch: int) -> list[list[int]]:
    """Indices grouped by similar length: sorted, a group spans at most `bucket` samples."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g is not None and len(g) < max_batch and lengths[i] - lengths[g[0]] <= bucket:
            g.append(i)
        else:
            groups.append([i])
    return groups


@dataclass
class UtteranceScores:
    """Averaged outputs per utterance (rows in input order)."""

    probabilities: np.ndarray | None  # [U, L]
    vad: np.ndarray | None  # [U, 3]
    windows: list[int]  # pieces per utterance


def score_utterances(
    audio: Sequence[np.ndarray],
    score: ScoreFn,
    plan: WindowPlan,
    *,
    bucket_s: float = 0.1,
    max_batch: int = 32,
    sample_rate: int = 16000,
    on_batch: Callable[[int, int], None] | None = None,
) -> UtteranceScores:
    """Score each utterance (whole or windowed) and average its pieces.

    `on_batch(done, total)` is told after every batch how many pieces are scored (for progress bars).
    """
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for u, x in enumerate(audio):
        for seg in segments(x, plan):
            pieces.append(seg)
            owner.append(u)
    probs: list[np.ndarray | None] = [None] * len(pieces)
    vads: list[np.ndarray | None] = [None] * len(pieces)
    bucket = round(bucket_s * sample_rate)
    done = 0
    for group in _buckets([len(p) for p in pieces], bucket, max_batch):
        n = min(len(pieces[i]) for i in group)
        batch = np.stack([_centre_crop(pieces[i], n) for i in group])
        p, v = score(batch)
        for row, i in enumerate(group):
            probs[i] = None if p is None else p[row]
            vads[i] = None if v is None else v[row]
        done += len(group)
        if on_batch is not None:
            on_batch(done, len(pieces))
    counts = np.bincount(np.asarray(owner, dtype=np.int64), minlength=len(audio))
    return UtteranceScores(
        probabilities=_average(probs, owner, len(audio)),
        vad=_average(vads, owner, len(audio)),
        windows=[int(c) for c in counts],
    )


def _centre_crop(x: np.ndarray, n: int) -> np.ndarray:
    start = (len(x) - n) // 2
    return x[start : start + n]


def _average(rows: list[np.ndarray | None], owner: list[int], n: int) -> np.ndarray | None:
    if not rows or rows[0] is None:
        return None
    width = len(rows[0])
    total = np.zeros((n, width), dtype=np.float64)
    count = np.zeros(n, dtype=np.float64)
    for r, u in zip(rows, owner, strict=True):
        if r is not None:
            total[u] += r
            count[u] += 1
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)
