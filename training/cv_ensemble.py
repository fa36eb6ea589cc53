"""Cross-validation ensembles: K members trained with `--split devfold:K:FOLD`, one per fold.

Each member's checkpoint was chosen on its own fold's validation actors, which it never trained on, so its
predictions there are out-of-fold. Pooled over the K folds they score the ensemble's recipe on every
development actor (RAVDESS 1-18: 504 four-class items instead of the 84 of actors 16-18), a far less noisy
selection figure, without ever touching the test actors 19-24. The ensemble itself cannot be scored on
validation: every development actor is in some member's training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.checkpoints import load_checkpoint_model, read_checkpoint_meta, resolve_checkpoint
from training.data.dataset import AudioDataset
from training.data.splits import devfold_actors
from training.pipeline import DataOptions, load_data
from training.validation import Predictions, torch_scorer


class CVError(ValueError):
    """Runs that do not form one complete cross-validation ensemble."""


def run_data(run: Path) -> DataOptions:
    """The data options a run was trained with (from its checkpoint metadata)."""
    meta = read_checkpoint_meta(resolve_checkpoint(run))
    return DataOptions(**meta["train_config"]["extra"]["data"])


@dataclass(frozen=True)
class Member:
    """One run of a CV ensemble: its directory and its fold."""

    run: Path
    k: int
    fold: int

    @property
    def actors(self) -> tuple[int, ...]:
        return devfold_actors(self.k, self.fold)


def run_subset(run: Path) -> list[str] | None:
    """The label subset a run's checkpoint was chosen on (e.g. the four classes of an all-label model)."""
    meta = read_checkpoint_meta(resolve_checkpoint(run))
    subset = meta["train_config"].get("select_labels")
    return list(subset) if subset else None


def cv_members(runs: list[Path]) -> list[Member] | None:
    """The runs as CV members sorted by fold; None when no run is a devfold run. Mixed runs, mixed K or
    missing/duplicate folds are errors: a pooled out-of-fold figure needs every fold exactly once."""
    splits = [run_data(r).split for r in runs]
    if not any(s.startswith("devfold:") for s in splits):
        return None
    members = []
    for run, spec in zip(runs, splits, strict=True):
        if not spec.startswith("devfold:"):
            raise CVError(f"{run}: split {spec!r} is not a devfold split; cannot mix it into a CV ensemble")
        _, k, fold = spec.split(":")
        members.append(Member(run, int(k), int(fold)))
    ks = {m.k for m in members}
    folds = sorted(m.fold for m in members)
    if len(ks) != 1 or folds != list(range(members[0].k)):
        raise CVError(f"CV ensemble needs each fold of one K exactly once, got splits {', '.join(splits)}")
    return sorted(members, key=lambda m: m.fold)


def out_of_fold(members: list[Member]) -> dict[str, Any]:
    """Each member scored on its own fold's validation speakers (whole utterances, as in training-time
    validation), plus the pooled report over all folds: {"folds": {run: report}, "pooled": report}."""
    pooled: Predictions | None = None
    folds: dict[str, Any] = {}
    for m in members:
        split, labels = load_data(run_data(m.run), seed=0)
        fold = Predictions(labels, run_subset(m.run))
        fold.add(torch_scorer(load_checkpoint_model(m.run).eval()), AudioDataset(split.val, labels, seed=0))
        folds[str(m.run)] = {"actors": list(m.actors), **fold.report()}
        if pooled is None:
            pooled = Predictions(labels, fold.subset)
        pooled.extend(fold)
    assert pooled is not None  # cv_members never returns an empty list
    return {"folds": folds, "pooled": pooled.report()}


def describe_cv(members: list[Member], speakers: dict[str, list[str]], data: DataOptions) -> dict[str, str]:
    """engine.json texts of a CV ensemble: its training data and its validation set."""
    k = members[0].k
    folds = "; ".join(f"fold {m.fold}: {_actors(m.actors)}" for m in members)
    names = ", ".join(spec.partition("=")[0] for spec in data.corpora)
    test = ", ".join(speakers["test"])
    return {
        "training_data": (
            f"corpora {names}; {k}-fold cross-validation ensemble over RAVDESS actors 1-18 (split "
            f"devfold:{k}:FOLD, {folds}): member FOLD trained on RAVDESS actors 1-18 minus its fold plus all "
            f"other corpora, its checkpoint chosen on its fold; held-out test: {test}; labels {data.labels}"
            + ("; RAVDESS calm trained as neutral" if data.merge_calm else "")
        ),
        "validation_set": (
            f"RAVDESS actors 1-18 out-of-fold: each of the {k} members scored on its own validation fold "
            f"({folds}), predictions pooled"
        ),
    }


def _actors(actors: tuple[int, ...]) -> str:
    return f"actors {actors[0]}-{actors[-1]}" if len(actors) > 1 else f"actor {actors[0]}"
