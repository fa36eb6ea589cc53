"""Training loop shared by every model: AdamW + warmup/cosine, balanced sampling, checkpoints and resume.

Determinism: every epoch reseeds torch from (seed, epoch) and the dataset/sampler draw from (seed, epoch),
so a run resumed from an epoch checkpoint reproduces an uninterrupted run bit for bit (CPU, 0 workers).
Checkpoints are safetensors (weights and optimiser moments) plus JSON (counters, history): loading never
unpickles anything. The best checkpoint is chosen on the validation set only (UA, or V/A/D CCC for models
without logits); test speakers never reach this module during training.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from training.adversary import SpeakerAdversary, adversarial_loss, require_embedding, speaker_keys
from training.averaging import WeightAverage
from training.checkpoints import (
    CheckpointError,
    load_optimizer_tensors,
    load_weights,
    optimizer_tensors,
    read_checkpoint_meta,
    save_checkpoint,
)
from training.data.dataset import AudioDataset, balanced_sampler, balanced_weights, collate
from training.data.types import Batch
from training.mixup import mixup_loss, require_mixup
from training.models.base import EmotionModel
from training.validation import validate

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that shapes a run; saved as JSON beside the outputs."""

    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    seed: int = 0
    out_dir: Path = Path("runs/latest")
    resume: bool = False
    max_steps: int | None = None
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    label_smoothing: float = 0.1
    vad_weight: float = 0.5
    vad_loss: str = "ccc"
    grad_clip: float = 5.0
    balanced: bool = True
    samples_per_epoch: int | None = None  # default: len(train_ds)
    threads: int | None = None
    progress: bool = True
    corpus_weights: dict[str, float] = field(default_factory=dict)  # extra mass per corpus (default 1)
    select_on: str = "auto"  # "ua" | "ccc" | "auto" (UA if the model has logits)
    select_labels: list[str] | None = None  # choose on UA over these labels only (argmax restricted)
    mixup: float = 0.0  # > 0: mixup with Beta(mixup, mixup) weights (`training.mixup`, audio-only models)
    average_last: int = 0  # > 0: the final model is the mean of the weights after each of the last N epochs
    speaker_adversary: float = 0.0  # > 0: gradient-reversal scale of a speaker classifier (adversary.py)
    model_name: str = ""  # registry name, stored in checkpoints so they can be rebuilt
    extra: dict[str, Any] = field(default_factory=dict)  # data description etc., saved in config.json

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


@dataclass
class TrainResult:
    """Where the checkpoints are and how the run went."""

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_metric: float
    best_epoch: int
    steps: int
    history: list[dict[str, Any]]


def repeat_pad(batch: Batch) -> Batch:
    """Replace collate's zero padding by repeating each clip (the engine's `padding: repeat` policy), so the
    model never learns from artificial silence that it will not see in the daemon."""
    n = batch.audio.shape[1]
    audio = batch.audio.clone()
    for i, length in enumerate(batch.lengths.tolist()):
        if 0 < length < n:
            reps = -(-n // length)
            audio[i] = batch.audio[i, :length].repeat(reps)[:n]
    return Batch(audio, batch.lengths, batch.labels, batch.vad, batch.text, batch.speakers, batch.corpora)


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup then cosine decay to `min_ratio` of the peak rate."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = min(1.0, (step - warmup) / max(total - warmup, 1))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _sampler(ds: AudioDataset, cfg: TrainConfig, n: int, epoch: int) -> WeightedRandomSampler:
    """The data engineer's corpus/speaker/class balance, optionally re-weighted per corpus."""
    seed = cfg.seed * 7919 + epoch
    if not cfg.corpus_weights:
        return balanced_sampler(ds.utts, ds.labels, n, seed=seed)
    w = balanced_weights(ds.utts, ds.labels)
    w = w * np.array([cfg.corpus_weights.get(u.corpus, 1.0) for u in ds.utts])
    gen = torch.Generator()
    gen.manual_seed(seed)
    return WeightedRandomSampler((w / w.sum()).tolist(), num_samples=n, replacement=True, generator=gen)


def _selection_score(metrics: dict[str, Any], select_on: str) -> float:
    ua_key = "sub_ua" if "sub_ua" in metrics else "ua"
    value = metrics.get(ua_key) if select_on == "ua" else metrics.get("ccc_mean")
    return float(value) if value is not None and math.isfinite(float(value)) else -math.inf


def train(
    model: EmotionModel,
    train_ds: AudioDataset,
    val_ds: AudioDataset | None,
    cfg: TrainConfig,
    *,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `model` on `train_ds`, validate on `val_ds` after each epoch, keep best/last checkpoints."""
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    if cfg.mixup > 0:
        require_mixup(model)  # before any epoch, not at the first step
    adversary = _build_adversary(model, train_ds, cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    select_on = cfg.select_on if cfg.select_on != "auto" else ("ua" if model.has_logits else "ccc")
    model.loss_weights.label_smoothing = cfg.label_smoothing
    model.loss_weights.vad = cfg.vad_weight
    model.loss_weights.vad_loss = cfg.vad_loss
    _write_run_config(out, model, cfg, len(train_ds), len(val_ds or []))
    n_samples = cfg.samples_per_epoch or len(train_ds)
    steps_per_epoch = max(1, n_samples // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    opt = _optimizer(model, adversary, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    )
    last_path, best_path = out / "last", out / "best"
    average_path = out / "average.safetensors"
    adversary_path = out / "last.adversary.safetensors"
    average = WeightAverage()
    start_epoch, step, best, best_epoch = 0, 0, -math.inf, -1
    history: list[dict[str, Any]] = []
    if cfg.resume and last_path.with_suffix(".json").is_file():
        meta = read_checkpoint_meta(last_path)
        load_weights(model, last_path)
        opt_file = out / "last.optim.safetensors"
        if not opt_file.is_file():
            raise CheckpointError(f"cannot resume: optimiser state {opt_file} is missing")
        if adversary is not None:
            if not adversary_path.is_file():
                raise CheckpointError(f"cannot resume: speaker adversary state {adversary_path} is missing")
            adversary.load_state_dict(load_file(str(adversary_path)))
        load_optimizer_tensors(opt, model, load_file(str(opt_file)), adversary)
        start_epoch, step = int(meta["epoch"]) + 1, int(meta["step"])
        best, best_epoch = float(meta.get("best_metric", -math.inf)), int(meta.get("best_epoch", -1))
        history = list(meta.get("history", []))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
        )
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_lambda(step, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
        sched.last_epoch = step
        if cfg.average_last > 0 and average_path.is_file():
            average = WeightAverage.load(average_path)
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total_steps:
            break
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        train_ds.set_epoch(epoch)
        sampler = _sampler(train_ds, cfg, n_samples, epoch) if cfg.balanced else None
        gen = torch.Generator()
        gen.manual_seed(cfg.seed * 31 + epoch)
        loader = DataLoader(
            train_ds,
            batch_size=cfg.batch_size,
            sampler=sampler,
            shuffle=sampler is None,
            generator=None if sampler is not None else gen,
            collate_fn=collate,
            drop_last=True,
        )
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        t0 = time.monotonic()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
        for batch in bar:
            if step >= total_steps:
                break
            padded = repeat_pad(batch)
            if adversary is not None:
                loss, logs = adversarial_loss(model, adversary, padded, cfg.mixup)
            elif cfg.mixup > 0:
                loss, logs = mixup_loss(model, padded, cfg.mixup)
            else:
                loss, logs = model.compute_loss(padded)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            n_batches += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "seconds": round(time.monotonic() - t0, 1),
            **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
        }
        score = _validate_into(record, model, val_ds, cfg, select_on)
        if score is None:
            score = -float(record.get("train_loss", math.inf))  # no validation set: lowest training loss
        history.append(record)
        if cfg.average_last > 0:
            if epoch >= cfg.epochs - cfg.average_last:
                average.add(model)
                average.save(average_path)
            score = -math.inf  # the averaged model is the result: no epoch is chosen on validation
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
        state = _state(cfg, epoch, step, best, best_epoch, select_on, history)
        save_checkpoint(last_path, model, state)
        if adversary is not None:
            save_file({k: v.contiguous() for k, v in adversary.state_dict().items()}, str(adversary_path))
        save_file(optimizer_tensors(opt, model, adversary), str(out / "last.optim.safetensors"))
        if improved:
            save_checkpoint(best_path, model, {**state, "metrics": record})
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}
        _emit(cfg, f"{json.dumps(shown)}{'  *best*' if improved else ''}")
        if on_epoch is not None:
            on_epoch(record)
    if cfg.average_last > 0 and history:
        best, best_epoch = _save_average(model, average, val_ds, cfg, best_path, history, step, select_on)
    if not best_path.with_suffix(".json").is_file():
        raise CheckpointError(f"no epoch finished, so no checkpoint was written in {out}")
    return TrainResult(
        out,
        best_path.with_suffix(".safetensors"),
        last_path.with_suffix(".safetensors"),
        best,
        best_epoch,
        step,
        history,
    )


def _write_run_config(out: Path, model: EmotionModel, cfg: TrainConfig, n_train: int, n_val: int) -> None:
    """The full config beside the run's outputs, so any run can be rebuilt from its directory."""
    doc = {
        "train": cfg.to_json(),
        "model": {"name": cfg.model_name, "config": model.config_dict(), "labels": model.labels},
        "train_items": n_train,
        "val_items": n_val,
    }
    (out / "config.json").write_text(json.dumps(doc, indent=2, default=str))


def _optimizer(
    model: EmotionModel, adversary: SpeakerAdversary | None, cfg: TrainConfig
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases or norms); the adversary's head undecayed."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if adversary is not None:
        groups.append({"params": list(adversary.parameters()), "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _build_adversary(
    model: EmotionModel, train_ds: AudioDataset, cfg: TrainConfig
) -> SpeakerAdversary | None:
    """The speaker classifier when `speaker_adversary` > 0, sized from the model's embedding."""
    if cfg.speaker_adversary <= 0:
        return None
    require_embedding(model)
    with torch.no_grad():
        was_training = model.training
        dim = int(model.eval().embed(torch.zeros(1, 16000)).shape[-1])  # type: ignore[operator]
        model.train(was_training)
    keys = speaker_keys([u.corpus for u in train_ds.utts], [u.speaker for u in train_ds.utts])
    return SpeakerAdversary(dim, keys, cfg.speaker_adversary)


def _save_average(
    model: EmotionModel,
    average: WeightAverage,
    val_ds: AudioDataset | None,
    cfg: TrainConfig,
    best_path: Path,
    history: list[dict[str, Any]],
    step: int,
    select_on: str,
) -> tuple[float, int]:
    """Load the weight average into `model` (the last weights if the run stopped before the averaging
    window), validate it and save it as the `best` checkpoint: the one the pipeline evaluates and exports."""
    if average.count == 0:
        average.add(model)
    average.apply_to(model)
    last_epoch = int(history[-1]["epoch"])
    record: dict[str, Any] = {"epoch": last_epoch, "step": step, "averaged_epochs": average.count}
    score = _validate_into(record, model, val_ds, cfg, select_on)
    score = -math.inf if score is None else score
    chosen = f"mean of the last {average.count} epochs' weights"
    state = _state(cfg, last_epoch, step, score, last_epoch, chosen, history)
    save_checkpoint(best_path, model, {**state, "metrics": record})
    _emit(cfg, f"weight average of {average.count} epochs: {json.dumps(record)}")
    return score, last_epoch


def _validate_into(
    record: dict[str, Any],
    model: EmotionModel,
    val_ds: AudioDataset | None,
    cfg: TrainConfig,
    select_on: str,
) -> float | None:
    """Validate, add the figures to `record` as val_*, return the selection score (None: no validation)."""
    if val_ds is None or len(val_ds) == 0:
        return None
    val = validate(model, val_ds, cfg.select_labels)
    record.update({f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))})
    return _selection_score(val, select_on)


def _state(
    cfg: TrainConfig,
    epoch: int,
    step: int,
    best: float,
    best_epoch: int,
    select_on: str,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """A checkpoint's metadata: counters, what chose it, the history and the config to rebuild the run."""
    return {
        "epoch": epoch,
        "step": step,
        "best_metric": best,
        "best_epoch": best_epoch,
        "select_on": select_on,
        "history": history,
        "model_name": cfg.model_name,
        "train_config": cfg.to_json(),
    }


def _emit(cfg: TrainConfig, line: str) -> None:
    """One line per epoch: above the progress bar, or to the log without one."""
    if cfg.progress:
        tqdm.write(line)
    else:
        log.info("%s", line)


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's legacy global RNG (libraries that still use it)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
