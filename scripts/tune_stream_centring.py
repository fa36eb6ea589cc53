"""Pick the daemon's stream-centring setting on cross-validation, by the rule in docs/default-engine.md.

Each fold's runs (their mean ensemble, trained without that fold's actors) score every clip of the fold's
RAVDESS actors, all eight emotions; the out-of-fold probabilities are cached in CACHE. Every setting of the
grid then replays each speaker's clips as streams (`training.stream_eval`, the daemon's own centring class),
two mixes, five seeds, and the rule picks one. Actors 19-24 are not read.
Usage: python scripts/tune_stream_centring.py CORPORA_DIR CACHE.npz RUN_PREFIX... (e.g. runs/fmix runs/fmixa1:
runs/fmix_f0 ... runs/fmix_f5 must exist)
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

from streamer.centring import CentringConfig
from training.stream_eval import Clips, out_of_fold_clips, stream_figures

SEEDS = (0, 1, 2, 3, 4)
STRENGTHS = (0.5, 0.75, 1.0)
WARMUPS = (0.0, 10.0, 30.0)
ESTIMATORS = ("mean", "balanced")
MAX_LOSS_NEUTRAL = 0.01
MIN_GAIN = 0.02


def load_or_score(corpora: Path, cache: Path, prefixes: list[str]) -> Clips:
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return Clips(z["probs"], z["truth"], list(z["kinds"]), list(z["speakers"]), z["seconds"])
    clips = out_of_fold_clips(corpora, prefixes)
    np.savez(cache, probs=clips.probabilities, truth=clips.truth, kinds=np.array(clips.kinds),
             speakers=np.array(clips.speakers), seconds=clips.seconds)  # fmt: skip
    return clips


def main() -> None:
    corpora, cache, prefixes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    clips = load_or_score(corpora, cache, prefixes)
    rows = []
    for estimator, strength, warmup in itertools.product(ESTIMATORS, STRENGTHS, WARMUPS):
        cfg = CentringConfig(enabled=True, strength=strength, warmup_s=warmup, estimator=estimator)  # type: ignore[arg-type]
        rec = stream_figures(clips, cfg, "as-recorded", SEEDS)
        neu = stream_figures(clips, cfg, "mostly-neutral", SEEDS)
        rows.append((estimator, strength, warmup, rec, neu))
        print(f"{estimator:8s} strength {strength:.2f} warm-up {warmup:4.0f} s | as recorded "
              f"{rec.raw_mean:.3f} -> {rec.centred_mean:.3f} ({min(rec.centred):.3f}-{max(rec.centred):.3f}) "
              f"| mostly neutral {neu.raw_mean:.3f} -> {neu.centred_mean:.3f} "
              f"({min(neu.centred):.3f}-{max(neu.centred):.3f}), n={rec.n_scored}/{neu.n_scored}",
              flush=True)  # fmt: skip
    allowed = [r for r in rows if r[4].centred_mean >= r[4].raw_mean - MAX_LOSS_NEUTRAL]
    if not allowed:
        print("rule: no setting keeps the mostly-neutral streams within one point: nothing ships")
        return
    best = max(allowed, key=lambda r: (round(r[3].centred_mean, 6), r[0] == "mean", -r[1]))
    gain = best[3].centred_mean - best[3].raw_mean
    verdict = "ships" if gain >= MIN_GAIN else "does not ship (gain below two points)"
    neutral_change = best[4].centred_mean - best[4].raw_mean
    print(f"rule: pick {best[0]}, strength {best[1]}, warm-up {best[2]:.0f} s: as recorded "
          f"+{gain:.3f}, mostly neutral {neutral_change:+.3f}: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
