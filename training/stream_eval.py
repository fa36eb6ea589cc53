"""Per-stream evaluation: each speaker's clips replayed as one stream through the daemon's score centring.

A per-clip figure scores every clip alone. The daemon hears one speaker for minutes, and with ``[centring]``
enabled it centres each window on the stream's earlier scores (``streamer.centring``). This replays that on
a labelled corpus with the same class: per speaker, the clips in a seeded random order, each clip one step
of as many seconds as its (trimmed) audio, centred on the clips before it only. Two mixes: "as-recorded"
(every clip, whatever its label) and "mostly-neutral" (the speaker's neutral and calm clips plus two each of
happy, sad and angry), the second checking that a stream that is mostly calm is not pushed into emotions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamer.centring import CentringConfig, StreamCentring
from training.data.dataset import SAMPLE_RATE
from training.metrics import unweighted_accuracy

Mix = Literal["as-recorded", "mostly-neutral"]
MIXES: tuple[Mix, ...] = ("as-recorded", "mostly-neutral")
_CALM_KINDS = ("neutral", "calm")
_MINORITY_KINDS = ("happy", "sad", "angry")
_MINORITY_PER_KIND = 2


@dataclass(frozen=True)
class Clips:
    """Per-clip scores of a labelled set: ``truth`` indexes the label set (-1: in the stream, not scored);
    ``kinds`` are the clips' own labels (``calm`` stays calm), used to build the mixes."""

    probabilities: npt.NDArray[np.float64]  # [N, K]
    truth: npt.NDArray[np.int64]  # [N]
    kinds: Sequence[str | None]
    speakers: Sequence[str]
    seconds: npt.NDArray[np.float64]  # [N]

    def __post_init__(self) -> None:
        n = len(self.truth)
        if self.probabilities.ndim != 2 or len(self.probabilities) != n:
            raise ValueError(f"probabilities must be [N, K] with N={n} (got {self.probabilities.shape})")
        if not len(self.kinds) == len(self.speakers) == len(self.seconds) == n:
            raise ValueError("truth, kinds, speakers and seconds must have one entry per clip")


@dataclass(frozen=True)
class StreamFigures:
    """Four-class UA of one mix over seeds: each clip alone (``raw``) and centred as a stream."""

    mix: Mix
    seeds: tuple[int, ...]
    n_scored: int  # scored clips per seed
    raw: tuple[float, ...]
    centred: tuple[float, ...]

    @property
    def raw_mean(self) -> float:
        return float(np.mean(self.raw))

    @property
    def centred_mean(self) -> float:
        return float(np.mean(self.centred))

    def to_dict(self) -> dict[str, object]:
        return {
            "mix": self.mix,
            "seeds": list(self.seeds),
            "n_scored": self.n_scored,
            "ua_raw": [round(x, 4) for x in self.raw],
            "ua_centred": [round(x, 4) for x in self.centred],
            "ua_raw_mean": round(self.raw_mean, 4),
            "ua_centred_mean": round(self.centred_mean, 4),
        }


def mix_rows(
    kinds: Sequence[str | None], speakers: Sequence[str], speaker: str, mix: Mix, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Rows of the speaker's clips in the mix (clips described by their labels and speakers), in a random
    stream order."""
    rows = np.flatnonzero(np.asarray(speakers) == speaker)
    if mix == "mostly-neutral":
        own = [kinds[int(i)] for i in rows]
        keep = [int(r) for r, k in zip(rows, own, strict=True) if k in _CALM_KINDS]
        for kind in _MINORITY_KINDS:
            of_kind = [int(r) for r, k in zip(rows, own, strict=True) if k == kind]
            keep.extend(int(r) for r in rng.permutation(of_kind)[:_MINORITY_PER_KIND])
        rows = np.array(sorted(keep), dtype=np.int64)
    elif mix != "as-recorded":
        raise ValueError(f"unknown stream mix {mix!r} (expected one of {', '.join(MIXES)})")
    return rng.permutation(rows).astype(np.int64)


def replay(clips: Clips, rows: npt.NDArray[np.int64], cfg: CentringConfig) -> npt.NDArray[np.float64]:
    """Centred probabilities of ``rows``, played in that order as one stream."""
    centring = StreamCentring(clips.probabilities.shape[1], cfg)
    out = np.empty((len(rows), clips.probabilities.shape[1]))
    for j, r in enumerate(rows):
        out[j] = centring.adapt_probabilities(clips.probabilities[r], float(clips.seconds[r]))
    return out


def stream_figures(clips: Clips, cfg: CentringConfig, mix: Mix, seeds: Sequence[int]) -> StreamFigures:
    """UA per seed of every speaker's stream, raw and centred, pooled over speakers."""
    k = clips.probabilities.shape[1]
    raw, centred, n_scored = [], [], 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        truth, raw_pred, centred_pred = [], [], []
        for speaker in sorted(set(clips.speakers)):
            rows = mix_rows(clips.kinds, clips.speakers, speaker, mix, rng)
            adapted = replay(clips, rows, cfg)
            scored = clips.truth[rows] >= 0
            truth.append(clips.truth[rows][scored])
            raw_pred.append(clips.probabilities[rows][scored].argmax(axis=1))
            centred_pred.append(adapted[scored].argmax(axis=1))
        y = np.concatenate(truth)
        if len(y) == 0:
            raise ValueError(f"no scored clip in the {mix} streams")
        n_scored = len(y)
        raw.append(unweighted_accuracy(y, np.concatenate(raw_pred), k))
        centred.append(unweighted_accuracy(y, np.concatenate(centred_pred), k))
    return StreamFigures(mix, tuple(seeds), n_scored, tuple(raw), tuple(centred))


def clips_from_predictions(predictions: Sequence[dict[str, Any]], label_set: Sequence[str]) -> Clips:
    """Clips from an evaluation report's per-utterance predictions (they carry probabilities over the
    label set, the speaker, the label and the seconds scored)."""
    rows = [p for p in predictions if p.get("probabilities") is not None and p.get("seconds") is not None]
    if not rows:
        raise ValueError("no per-utterance class probabilities with durations to replay as streams")
    pos = {lab: j for j, lab in enumerate(label_set)}
    return Clips(
        probabilities=np.array([p["probabilities"] for p in rows], dtype=np.float64),
        truth=np.array([pos.get(p["label"], -1) for p in rows], dtype=np.int64),
        kinds=[p["label"] for p in rows],
        speakers=[str(p["speaker"]) for p in rows],
        seconds=np.array([p["seconds"] for p in rows], dtype=np.float64),
    )


def out_of_fold_clips(corpora: Path, prefixes: Sequence[str], k: int = 6) -> Clips:
    """Every clip of RAVDESS actors 1-18 (all eight emotions) scored whole by the runs of its own fold
    (`PREFIX_fFOLD`, trained without that fold's actors; their mean where there are several prefixes)."""
    import torch

    from training.cv_ensemble import load_runs
    from training.data.corpora import load_corpus
    from training.data.dataset import AudioDataset
    from training.data.labels import LABEL_SETS
    from training.data.splits import devfold_actors, ravdess_actor
    from training.validation import pad_clip, torch_scorer

    labels = LABEL_SETS["4"]
    ravdess = load_corpus("ravdess", corpora / "ravdess")
    probs, truth, kinds, speakers, seconds = [], [], [], [], []
    for fold in range(k):
        actors = {ravdess_actor(a) for a in devfold_actors(k, fold)}
        utts = [u for u in ravdess if u.speaker in actors]
        score = torch_scorer(load_runs([Path(f"{p}_f{fold}") for p in prefixes]).eval())
        ds = AudioDataset(utts, labels)
        for i, u in enumerate(utts):
            audio = ds.audio(i)
            logits, _ = score(pad_clip(audio))
            if logits is None:
                raise ValueError(f"{prefixes[0]}_f{fold}: the runs have no categorical head")
            probs.append(torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy())
            truth.append(labels.index(u.label) if u.label in labels else -1)
            kinds.append(u.label)
            speakers.append(u.speaker)
            seconds.append(len(audio) / SAMPLE_RATE)
    return Clips(np.stack(probs), np.array(truth), kinds, speakers, np.array(seconds))
