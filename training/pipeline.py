"""The `train` command's work: read corpora, split by speaker, build datasets and model, train, evaluate
the best checkpoint on held-out speakers, export an engine with provenance. Kept apart from argument
parsing so tests and scripts call it directly."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data.augment import augmenter_from_options
from training.data.corpora import CorpusError, parse_corpus_specs
from training.data.dataset import AudioDataset, select_labels
from training.data.labels import category_vad, resolve_label_set
from training.data.splits import (
    Split,
    default_split,
    devall_split,
    devfold_split,
    fraction_by_speaker,
    kfold_by_speaker,
    speakers_out,
)
from training.data.types import Utterance
from training.models import build_model
from training.models.base import EmotionModel, ModelError
from training.trainer import TrainConfig, TrainResult, load_weights, train
from training.validation import validate

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class DataOptions:
    """What to train on: corpora, label set, split and the training-time view of the audio."""

    corpora: list[str] = field(default_factory=list)  # NAME=PATH
    labels: str = "4"
    merge_calm: bool = True  # RAVDESS calm counts as neutral (with its own calm V/A/D target)
    split: str = "default"  # default | devfold:K:FOLD | kfold:K:FOLD | speakers=ID,ID (held out as test)
    fraction: float | None = None  # keep only this fraction of the training speakers
    crop_s: float = 2.0
    augment: bool = True
    augment_options: dict[str, Any] = field(default_factory=dict)  # Augmenter settings (`augment.TUNABLE`)


def git_revision() -> str:
    """`<commit>` plus `-dirty` when the tree has changes; 'unknown' outside a git checkout."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def relabel(utts: list[Utterance], merge_calm: bool) -> list[Utterance]:
    """Apply label merges (calm -> neutral keeps calm's V/A/D point as the regression target)."""
    if not merge_calm:
        return utts
    out = []
    for u in utts:
        if u.label == "calm":
            vad = u.vad if u.vad is not None else category_vad("calm", u.intensity)
            u = dataclasses.replace(u, label="neutral", vad=vad)
        out.append(u)
    return out


def make_split(utts: list[Utterance], opts: DataOptions, seed: int) -> Split:
    """Train/val/test by speaker. Validation speakers always come from outside the test set."""
    if opts.split == "default":
        split = default_split(utts)
    elif opts.split == "devall":
        split = devall_split(utts)
    elif opts.split.startswith("devfold:"):
        try:
            _, k, fold = opts.split.split(":")
            split = devfold_split(utts, int(k), int(fold))
        except ValueError as e:
            raise CorpusError(f"bad --split {opts.split!r}: {e}") from None
    elif opts.split.startswith("kfold:"):
        try:
            _, k, fold = opts.split.split(":")
            rest, test = kfold_by_speaker(utts, int(k), int(fold))
        except ValueError as e:
            raise CorpusError(f"bad --split {opts.split!r}: {e}") from None
        train_part, val = fraction_by_speaker(rest, 0.15, seed)
        split = Split(train_part, val, test)
    elif opts.split.startswith("speakers="):
        ids = [s.strip() for s in opts.split.removeprefix("speakers=").split(",") if s.strip()]
        rest, test = speakers_out(utts, ids)
        train_part, val = fraction_by_speaker(rest, 0.15, seed)
        split = Split(train_part, val, test)
    else:
        raise CorpusError(
            f"unknown --split {opts.split!r}: use default, devfold:K:FOLD, devall, kfold:K:FOLD or "
            "speakers=ID,ID"
        )
    if opts.fraction is not None:
        if not 0.0 < opts.fraction <= 1.0:
            raise CorpusError(f"--fraction must be in (0, 1], got {opts.fraction}")
        if opts.fraction < 1.0:
            _drop, keep = fraction_by_speaker(split.train, opts.fraction, seed)
            split = Split(keep, split.val, split.test)
    if not split.train:
        raise CorpusError("the training split is empty: check --corpus and --split")
    return split


def load_data(opts: DataOptions, seed: int) -> tuple[Split, list[str]]:
    """Corpora read, labels merged and restricted to the label set, split by speaker."""
    if not opts.corpora:
        raise CorpusError(
            "no training corpus given: pass --corpus NAME=PATH (e.g. ravdess=../corpora/ravdess)"
        )
    try:
        labels = resolve_label_set(opts.labels)
    except ValueError as e:
        raise CorpusError(str(e)) from None
    utts = relabel(parse_corpus_specs(opts.corpora), opts.merge_calm)
    utts = select_labels(utts, labels)
    if not utts:
        raise CorpusError(f"no utterance of the corpora {', '.join(opts.corpora)} has a label in {labels}")
    return make_split(utts, opts, seed), labels


def datasets(split: Split, labels: list[str], opts: DataOptions, seed: int) -> tuple[AudioDataset, ...]:
    """(train, val, test) datasets; audio decoded into RAM once; augmentation for training only."""
    train_ds = AudioDataset(split.train, labels, crop_s=opts.crop_s, seed=seed)
    train_ds.preload()
    if opts.augment:
        rng = random.Random(seed)
        pool_idx = rng.sample(range(len(train_ds)), min(64, len(train_ds)))
        pool = [train_ds.audio(i) for i in pool_idx]
        train_ds.augment = augmenter_from_options(opts.augment_options, pool)
    val_ds = AudioDataset(split.val, labels, seed=seed)
    test_ds = AudioDataset(split.test, labels, seed=seed)
    return train_ds, val_ds, test_ds


def build(
    name: str, model_config: dict[str, Any], labels: list[str], *, backbone: Path | None, init: Path | None
) -> EmotionModel:
    """The registry model, with a pretrained backbone path and/or initial weights where given."""
    cfg = dict(model_config)
    if backbone is not None:
        if not backbone.exists():
            raise ModelError(f"backbone path not found: {backbone}")
        cfg["backbone"] = str(backbone)
    model = build_model(name, cfg, labels)
    if init is not None:
        if not init.with_suffix(".safetensors").is_file():
            raise ModelError(f"--init checkpoint not found: {init}")
        load_weights(model, init, strict=False)
    return model


def run_training(
    model_name: str,
    model_config: dict[str, Any],
    data: DataOptions,
    cfg: TrainConfig,
    *,
    backbone: Path | None = None,
    init: Path | None = None,
) -> tuple[EmotionModel, TrainResult, dict[str, Any]]:
    """Train, reload the best (validation-chosen) checkpoint, then evaluate it once on the test speakers."""
    split, labels = load_data(data, cfg.seed)
    cfg.model_name = model_name
    cfg.extra = {**cfg.extra, "data": dataclasses.asdict(data), "speakers": split.speakers()}
    model = build(model_name, model_config, labels, backbone=backbone, init=init)
    train_ds, val_ds, test_ds = datasets(split, labels, data, cfg.seed)
    log.info("train %d, val %d, test %d utterances", len(train_ds), len(val_ds), len(test_ds))
    result = train(model, train_ds, val_ds, cfg)
    load_weights(model, result.best_checkpoint)
    model.eval()
    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch,
        "val": validate(model, val_ds, cfg.select_labels),
    }
    if len(test_ds) and not (data.split.startswith("devfold:") or data.split == "devall"):
        # a devfold run is one member of a cross-validation ensemble, a devall run one of an engine whose
        # recipe cross-validation chose: only the engine, chosen on pooled out-of-fold validation, is ever
        # scored on the test speakers, so members are never judged on them
        metrics["test"] = validate(model, test_ds, cfg.select_labels)
    (Path(cfg.out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return model, result, metrics


LICENCE_NOTE = (
    "CC BY-NC-SA 4.0 (non-commercial, attribution, share-alike): trained on RAVDESS (CC BY-NC-SA 4.0) "
    "and TESS (CC BY-NC-ND 4.0)"
)


def export_model_engine(
    model: EmotionModel,
    out_dir: Path,
    *,
    name: str,
    version: str,
    provenance: dict[str, Any],
    window_s: float = 2.0,
    hop_s: float = 0.5,
) -> tuple[Path, Any]:
    """Export `model` as an engine (model.onnx + engine.json) and check ORT/torch parity on real-length
    inputs; returns (engine dir, parity report)."""
    from engines.manifest import EngineManifest, EngineOutputs, Provenance
    from training.export import check_parity, export_engine

    manifest = EngineManifest(
        name=name,
        version=version,
        labels=tuple(model.labels),
        outputs=EngineOutputs(logits=model.has_logits, vad=model.has_vad),
        window_s=window_s,
        hop_s=hop_s,
        min_window_s=0.5,
        max_window_s=8.0,
        padding="repeat",
        provenance=Provenance(**provenance),
    )
    model.eval()
    engine_dir = export_engine(model, out_dir, manifest)
    parity = check_parity(
        model, engine_dir, lengths=(8000, 32000, 52000), batch_sizes=(1, 4), audio=parity_clips()
    )
    return engine_dir, parity


def parity_clips() -> list[np.ndarray]:
    """Speech-like clips with stretches of digital silence (exact zeros, as TTS and gated mics give):
    graph optimisations that drop tiny epsilons turn those into NaN, which the parity check then catches."""
    from training.export import speech_like

    clips = []
    for seed in range(4):
        x = speech_like(48000, seed=seed)
        x[8000 * (seed % 2) : 8000 * (seed % 2) + 6000] = 0.0
        x[30000:36000] = 0.0
        clips.append(x)
    clips.append(np.zeros(16000, dtype=np.float32))
    return clips


def describe_training_data(data: DataOptions, speakers: dict[str, list[str]]) -> str:
    """One line for engine.json: corpora, who was trained/validated/tested on, labels."""

    def spk(ids: list[str]) -> str:
        return ", ".join(ids) if len(ids) <= 30 else f"{len(ids)} speakers"

    names = ", ".join(spec.partition("=")[0] for spec in data.corpora)
    calm = "; RAVDESS calm trained as neutral" if data.merge_calm else ""
    val = spk(speakers["val"]) if speakers["val"] else "none (weights averaged, nothing chosen)"
    return (
        f"corpora {names}; split {data.split}; train speakers: {spk(speakers['train'])}; "
        f"validation (checkpoint choice): {val}; held-out test: {spk(speakers['test'])}; "
        f"labels {data.labels}{calm}"
    )


def corpus_root(data: DataOptions, name: str) -> Path | None:
    """The path given for corpus `name` in --corpus NAME=PATH, if any."""
    for spec in data.corpora:
        key, _, path = spec.partition("=")
        if key.strip().lower() == name:
            return Path(path)
    return None


def default_engine_metrics(
    engine_dir: Path,
    ravdess_root: Path,
    val: dict[str, Any],
    validation_set: str = "RAVDESS actors 16-18",
) -> dict[str, Any]:
    """Provenance figures of an engine trained on the default split: the exported ONNX engine evaluated on
    RAVDESS actors 19-24 (four classes; calm excluded as in the usual protocol) with the shared evaluator,
    so `emotrack evaluate` reproduces them; plus the validation figures that chose the checkpoint."""
    from training.evaluate import evaluate_default_engine

    figures, reports = evaluate_default_engine(engine_dir, ravdess_root, threads=1)
    four = reports["4"]
    metrics: dict[str, Any] = {
        "test_set": "RAVDESS actors 19-24 (never used for training, tuning or checkpoint choice)",
        "ua_4": four.ua,
        "wa_4": four.wa,
        "macro_f1_4": four.macro_f1,
        "n_4": four.n,
        "recall_4": four.recall,
        "ccc": four.ccc,
        # all eight RAVDESS emotions; labels the engine does not have count with recall 0
        "ua_all": figures["ua_all"],
        "wa_all": figures["wa_all"],
        "n_all": figures["n_all"],
        "unpredictable_all": figures["unpredictable_all"],
        "validation": {k: v for k, v in val.items() if k in ("ua", "sub_ua", "wa", "ccc_mean", "n")},
        "validation_set": validation_set,
    }
    return metrics


def write_provenance_metrics(engine_dir: Path, metrics: dict[str, Any]) -> None:
    """Replace the metrics in engine.json's provenance (model.onnx, and so its checksum, is unchanged)."""
    from engines.manifest import read_manifest, write_manifest

    m = read_manifest(engine_dir)
    write_manifest(
        engine_dir, dataclasses.replace(m, provenance=dataclasses.replace(m.provenance, metrics=metrics))
    )
