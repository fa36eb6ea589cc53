"""Could the daemon alone (no new engine) normalise per stream? A probe on the cross-validation runs.

Each fold's runs (their mean ensemble, trained without that fold's actors) score every clip of the fold's
RAVDESS actors, all eight emotions. Per speaker, the mean of the four-class log-probabilities over that
speaker's clips is subtracted before the argmax: what a stream could do by centring its scores on a running
mean. Pooled out-of-fold four-class UA over actors 1-18, three ways: raw, centred over all the speaker's clips
(every emotion), centred over the four-class clips only, and causally (a running mean, clips in random order).
Actors 19-24 are not read.
Usage: python scripts/probe_stream_centering.py CORPORA_DIR RUN_PREFIX... (e.g. runs/fmix runs/fmixa1:
runs/fmix_f0 ... runs/fmix_f5 must exist)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.metrics import unweighted_accuracy
from training.stream_eval import out_of_fold_clips


def centred_ua(logp: np.ndarray, y: np.ndarray, speakers: np.ndarray, reference: np.ndarray) -> float:
    """UA on labelled rows after subtracting each speaker's mean log-probability over `reference` rows."""
    out = logp.copy()
    for spk in set(speakers.tolist()):
        rows = speakers == spk
        out[rows] -= logp[rows & reference].mean(axis=0)
    keep = y >= 0
    return unweighted_accuracy(y[keep], out[keep].argmax(axis=1), logp.shape[1])


def causal_centred_ua(logp: np.ndarray, y: np.ndarray, speakers: np.ndarray, seed: int = 0) -> float:
    """As a stream would: each speaker's clips in a random order, each centred on the mean log-probability
    of that speaker's earlier clips (the first clip is left as it is)."""
    rng = np.random.default_rng(seed)
    out = logp.copy()
    for spk in sorted(set(speakers.tolist())):
        rows = rng.permutation(np.flatnonzero(speakers == spk))
        earlier = np.cumsum(logp[rows], axis=0) - logp[rows]  # sum over the clips before each one
        count = np.arange(len(rows))[:, None]
        out[rows[1:]] = logp[rows[1:]] - earlier[1:] / count[1:]
    keep = y >= 0
    return unweighted_accuracy(y[keep], out[keep].argmax(axis=1), logp.shape[1])


def main() -> None:
    corpora, prefixes = Path(sys.argv[1]), sys.argv[2:]
    clips = out_of_fold_clips(corpora, prefixes)
    logp, y, speakers = np.log(clips.probabilities), clips.truth, np.array(clips.speakers)
    keep = y >= 0
    raw = unweighted_accuracy(y[keep], logp[keep].argmax(axis=1), logp.shape[1])
    every = centred_ua(logp, y, speakers, np.ones(len(y), dtype=bool))
    four = centred_ua(logp, y, speakers, keep)
    causal = [causal_centred_ua(logp, y, speakers, seed) for seed in range(5)]
    print(f"{'+'.join(prefixes)}: n={int(keep.sum())} raw {raw:.3f}, centred on every emotion {every:.3f}, "
          f"centred on the four-class clips {four:.3f}, running mean in 5 random orders "
          f"{' '.join(f'{c:.3f}' for c in causal)}")  # fmt: skip


if __name__ == "__main__":
    main()
