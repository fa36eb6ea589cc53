"""Speaker-independent splits: no speaker ever appears on both sides, so scores measure generalisation
to new voices rather than memorised ones."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from training.data.types import Utterance

# The default engine split (RAVDESS actors by number). Validation takes the last three non-test actors
# (16 female, 17 male, 18 female) so checkpoint choice sees both genders; actors 19-24 are the test
# set and never touch training, tuning or checkpoint selection.
DEFAULT_VAL_ACTORS: tuple[int, ...] = (16, 17, 18)
DEFAULT_TEST_ACTORS: tuple[int, ...] = (19, 20, 21, 22, 23, 24)


class SplitError(ValueError):
    """A split request that cannot be honoured (unknown speaker, bad fold, empty side)."""


@dataclass(frozen=True)
class Split:
    """Train / validation / test partitions of a corpus list."""

    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]

    def speakers(self) -> dict[str, list[str]]:
        """Sorted speaker ids per side (for logs and for provenance in engine manifests)."""
        return {
            "train": _speakers(self.train),
            "val": _speakers(self.val),
            "test": _speakers(self.test),
        }


def _speakers(utts: Iterable[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utts})


def ravdess_actor(actor: int) -> str:
    """The speaker id the RAVDESS reader gives actor `actor`."""
    return f"ravdess_{actor:02d}"


def speakers_out(
    utts: list[Utterance], test_speakers: Iterable[str]
) -> tuple[list[Utterance], list[Utterance]]:
    """(rest, held-out) where held-out holds exactly the listed speakers; an unknown speaker is an error."""
    held = set(test_speakers)
    unknown = held - {u.speaker for u in utts}
    if unknown:
        raise SplitError(f"unknown speaker(s) in split: {', '.join(sorted(unknown))}")
    return [u for u in utts if u.speaker not in held], [u for u in utts if u.speaker in held]


def kfold_by_speaker(utts: list[Utterance], k: int, fold: int) -> tuple[list[Utterance], list[Utterance]]:
    """(train, test) of fold `fold` of `k`: speakers ordered by corpus then id and dealt round-robin into k
    folds, so each corpus's speakers spread over the folds and no fold is empty."""
    if k < 2 or not 0 <= fold < k:
        raise SplitError(f"bad k-fold request: k={k}, fold={fold} (need k >= 2 and 0 <= fold < k)")
    ordered = sorted({(u.corpus, u.speaker) for u in utts})
    if len(ordered) < k:
        raise SplitError(f"k-fold by speaker needs at least k={k} speakers, found {len(ordered)}")
    held = {spk for i, (_corpus, spk) in enumerate(ordered) if i % k == fold}
    return speakers_out(utts, held)


def fraction_by_speaker(
    utts: list[Utterance], fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """(rest, held-out) with about `fraction` of each corpus's speakers held out (at least one where the
    corpus has two or more speakers and fraction > 0), chosen reproducibly from `seed`."""
    if not 0.0 <= fraction < 1.0:
        raise SplitError(f"speaker fraction must be in [0, 1): {fraction}")
    rng = random.Random(seed)
    held: set[str] = set()
    for corpus in sorted({u.corpus for u in utts}):
        spk = _speakers(u for u in utts if u.corpus == corpus)
        rng.shuffle(spk)
        n = round(fraction * len(spk))
        if fraction > 0 and n == 0 and len(spk) >= 2:
            n = 1
        held.update(spk[:n])
    return speakers_out(utts, held)


def default_split(
    utts: list[Utterance],
    val_actors: Iterable[int] = DEFAULT_VAL_ACTORS,
    test_actors: Iterable[int] = DEFAULT_TEST_ACTORS,
) -> Split:
    """The default engine split: test = RAVDESS actors 19-24, val = RAVDESS 16-18, train = everything else
    (RAVDESS 1-15, all of TESS and any other corpus given)."""
    test_ids = {ravdess_actor(a) for a in test_actors}
    val_ids = {ravdess_actor(a) for a in val_actors}
    if test_ids & val_ids:
        raise SplitError("validation and test actors overlap")
    split = Split(
        train=[u for u in utts if u.speaker not in test_ids | val_ids],
        val=[u for u in utts if u.speaker in val_ids],
        test=[u for u in utts if u.speaker in test_ids],
    )
    if not split.test or not split.val:
        raise SplitError(
            "the default split needs RAVDESS (actors 16-24 were not found): pass --corpus ravdess=PATH"
        )
    return split


DEV_ACTORS: tuple[int, ...] = tuple(a for a in range(1, 25) if a not in DEFAULT_TEST_ACTORS)


def devfold_actors(k: int, fold: int) -> tuple[int, ...]:
    """RAVDESS actors of validation fold `fold` of `k` over the non-test actors 1-18: consecutive blocks
    (K=6: 1-3, 4-6, ..., 16-18), so with RAVDESS's odd-male/even-female numbering every fold holds both
    genders, and fold K-1 of K=6 is the default validation set (16-18)."""
    if not 2 <= k <= len(DEV_ACTORS) // 2 or not 0 <= fold < k:
        raise SplitError(
            f"bad devfold request: k={k}, fold={fold} (need 2 <= k <= {len(DEV_ACTORS) // 2}, 0 <= fold < k)"
        )
    bounds = [round(i * len(DEV_ACTORS) / k) for i in range(k + 1)]
    return DEV_ACTORS[bounds[fold] : bounds[fold + 1]]


def devfold_split(utts: list[Utterance], k: int, fold: int) -> Split:
    """Cross-validation over the development actors: test = the default split's test set (RAVDESS 19-24),
    val = fold `fold` of `k` over RAVDESS 1-18, train = the other RAVDESS 1-18 actors plus every other
    corpus. K members, one per fold, together use all 18 actors for training and all for validation."""
    return default_split(utts, val_actors=devfold_actors(k, fold))


def _expand_actors(token: str) -> list[str]:
    """A bare RAVDESS actor number or an inclusive range of them (`1-18`) as speaker ids; else the token."""
    m = re.fullmatch(r"(\d+)-(\d+)", token)
    if m is not None:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise SplitError(f"--split speakers=: empty actor range {token!r}")
        return [ravdess_actor(a) for a in range(lo, hi + 1)]
    return [ravdess_actor(int(token))] if token.isdigit() else [token]


def parse_split(spec: str, utts: list[Utterance]) -> list[Utterance]:
    """The utterances a CLI `--split` names: `default-test`, `default-val`, `all` or `speakers=ID,ID,...`
    (speaker ids as the readers give them, e.g. ravdess_19, bare RAVDESS actor numbers, or ranges of them:
    `speakers=1-18` is RAVDESS's development actors)."""
    if spec == "all":
        return list(utts)
    if spec == "default-test":
        return default_split(utts).test
    if spec == "default-val":
        return default_split(utts).val
    if spec.startswith("speakers="):
        ids = [s.strip() for s in spec.removeprefix("speakers=").split(",") if s.strip()]
        ids = [i for s in ids for i in _expand_actors(s)]
        if not ids:
            raise SplitError("--split speakers= needs at least one speaker id")
        return speakers_out(utts, ids)[1]
    raise SplitError(f"unknown split {spec!r}: use default-test, default-val, all or speakers=ID,...")


def devall_split(utts: list[Utterance]) -> Split:
    """All development data for training, no validation: train = RAVDESS 1-18 plus every other corpus,
    test = the default test actors (19-24). For recipes that choose nothing on validation (weight-averaged
    runs) once cross-validation has scored them (`training.cv_ensemble`)."""
    test_ids = {ravdess_actor(a) for a in DEFAULT_TEST_ACTORS}
    split = Split(
        train=[u for u in utts if u.speaker not in test_ids],
        val=[],
        test=[u for u in utts if u.speaker in test_ids],
    )
    if not split.test:
        raise SplitError(
            "the devall split needs RAVDESS (actors 19-24 were not found): pass --corpus ravdess=PATH"
        )
    return split
