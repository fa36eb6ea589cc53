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
from training.models.base import EmotionModel
from training.models.ensemble import MeanEnsemble
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


def load_runs(runs: list[Path]) -> EmotionModel:
    """One run's best checkpoint, or a mean ensemble of several."""
    models = [load_checkpoint_model(r) for r in runs]
    return models[0] if len(models) == 1 else MeanEnsemble(models).eval()


def run_subset(run: Path) -> list[str] | None:
    """The label subset a run's checkpoint was chosen on (e.g. the four classes of an all-label model)."""
    meta = read_checkpoint_meta(resolve_checkpoint(run))
    subset = meta["train_config"].get("select_labels")
    return list(subset) if subset else None


def cv_members(runs: list[Path]) -> list[Member] | None:
    """The runs as CV members sorted by fold; None when no run is a devfold run. Mixed runs, mixed K or
    folds that are missing or not equally often present are errors: a pooled out-of-fold figure needs every
    fold, and an ensemble that weighs every fold alike needs the same number of runs (recipes or seeds) in
    each."""
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
    per_fold = len(folds) // members[0].k if len(ks) == 1 else 0
    if per_fold < 1 or folds != sorted(list(range(members[0].k)) * per_fold):
        raise CVError(f"CV ensemble needs each fold of one K equally often, got splits {', '.join(splits)}")
    return sorted(members, key=lambda m: m.fold)


def fold_groups(members: list[Member]) -> dict[int, list[Member]]:
    """The members of each fold (several where runs of several recipes or seeds share a fold)."""
    groups: dict[int, list[Member]] = {}
    for m in members:
        groups.setdefault(m.fold, []).append(m)
    return groups


def out_of_fold(members: list[Member]) -> dict[str, Any]:
    """Each fold's members (their mean ensemble where there are several) scored on that fold's validation
    speakers (whole utterances, as in training-time validation), plus the pooled report over all folds:
    {"folds": {"run[+run...]": report}, "pooled": report}."""
    pooled: Predictions | None = None
    folds: dict[str, Any] = {}
    for group in fold_groups(members).values():
        runs = [m.run for m in group]
        split, labels = load_data(run_data(runs[0]), seed=0)
        fold = Predictions(labels, run_subset(runs[0]))
        fold.add(torch_scorer(load_runs(runs).eval()), AudioDataset(split.val, labels, seed=0))
        folds["+".join(str(r) for r in runs)] = {"actors": list(group[0].actors), **fold.report()}
        if pooled is None:
            pooled = Predictions(labels, fold.subset)
        pooled.extend(fold)
    assert pooled is not None  # cv_members never returns an empty list
    return {"folds": folds, "pooled": pooled.report()}


def describe_cv(members: list[Member], speakers: dict[str, list[str]], data: DataOptions) -> dict[str, str]:
    """engine.json texts of a CV ensemble: its training data and its validation set."""
    k = members[0].k
    groups = fold_groups(members)
    folds = "; ".join(f"fold {f}: {_actors(g[0].actors)}" for f, g in groups.items())
    per_fold = len(members) // k
    runs = f" ({per_fold} runs per fold)" if per_fold > 1 else ""
    names = ", ".join(spec.partition("=")[0] for spec in data.corpora)
    test = ", ".join(speakers["test"])
    return {
        "training_data": (
            f"corpora {names}; {k}-fold cross-validation ensemble over RAVDESS actors 1-18 (split "
            f"devfold:{k}:FOLD, {folds}){runs}: the members of fold FOLD trained on RAVDESS actors 1-18 "
            "minus that fold plus all other corpora, the fold serving only as their validation; held-out "
            f"test: {test}; labels {data.labels}"
            + ("; RAVDESS calm trained as neutral" if data.merge_calm else "")
        ),
        "validation_set": (
            f"RAVDESS actors 1-18 out-of-fold: each fold's member{'s (their mean)' if per_fold > 1 else ''} "
            f"scored on its own validation fold ({folds}), predictions pooled"
        ),
    }


def _actors(actors: tuple[int, ...]) -> str:
    return f"actors {actors[0]}-{actors[-1]}" if len(actors) > 1 else f"actor {actors[0]}"
