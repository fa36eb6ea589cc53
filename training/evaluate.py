"""Evaluate an engine or a torch checkpoint on labelled utterances: UA, WA, F1, confusion matrix, V/A/D CCC.

Engine labels are mapped to common labels (`fearful` -> `fear`) and onto the requested label set: the
probabilities of engine labels outside the set are dropped, and set labels the engine cannot produce are
reported (their recall is necessarily 0). Audio is trimmed of leading/trailing silence the way the training
data is, standing in for the streamer's voice activity detection.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data.dataset import SAMPLE_RATE, load_audio, trim_silence
from training.data.labels import LABEL_SETS, normalise_label, resolve_label_set
from training.data.types import Utterance
from training.metrics import ccc, classification_report
from training.scoring import ScoreFn, WindowPlan, score_utterances

VAD_NAMES = ("valence", "arousal", "dominance")


class EvalError(Exception):
    """An evaluation that cannot run (nothing to score, labels that do not meet): one-line message."""


@dataclass
class EvalReport:
    """Figures of one evaluation; `predictions` (per utterance) go to predictions.jsonl, not metrics.json."""

    source: str
    label_set: list[str]
    n: int
    ua: float | None
    wa: float | None
    macro_f1: float | None
    weighted_f1: float | None
    recall: dict[str, float | None]
    confusion: list[list[int]]
    ccc: dict[str, float] | None
    n_vad: int
    unpredictable_labels: list[str]
    corpora: dict[str, int]
    speakers: list[str]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    streams: list[dict[str, Any]] | None = None  # per-stream figures (`training.stream_eval`), when asked

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("predictions")
        return d


def label_matrix(engine_labels: Sequence[str], label_set: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """[E, L] 0/1 matrix summing engine-label probabilities into set labels, and the set labels no engine
    label maps to."""
    m = np.zeros((len(engine_labels), len(label_set)), dtype=np.float32)
    pos = {lab: j for j, lab in enumerate(label_set)}
    for i, name in enumerate(engine_labels):
        common = normalise_label(name)
        if common in pos:
            m[i, pos[common]] = 1.0
    missing = [lab for j, lab in enumerate(label_set) if not m[:, j].any()]
    return m, missing


def evaluate_scores(
    utts: Sequence[Utterance],
    probabilities: np.ndarray | None,
    vad: np.ndarray | None,
    engine_labels: Sequence[str],
    label_set: Sequence[str],
    source: str,
    seconds: Sequence[float] | None = None,
) -> EvalReport:
    """Metrics from per-utterance outputs (rows aligned with utts; `seconds`: the audio each one scored)."""
    labels = list(label_set)
    pos = {lab: j for j, lab in enumerate(labels)}
    y_true = np.array([pos.get(u.label, -1) if u.label else -1 for u in utts], dtype=np.int64)
    cls: dict[str, Any] = {}
    missing: list[str] = []
    y_pred = np.full(len(utts), -1, dtype=np.int64)
    mapped: np.ndarray | None = None
    if probabilities is not None:
        m, missing = label_matrix(engine_labels, labels)
        if len(missing) == len(labels):
            raise EvalError(
                f"{source}: none of the engine labels {list(engine_labels)} is in the set {labels}"
            )
        mapped = probabilities @ m
        y_pred = np.argmax(mapped, axis=1).astype(np.int64)
        if (y_true >= 0).any():
            cls = classification_report(y_true, y_pred, labels)
    ccc_by_dim: dict[str, float] | None = None
    n_vad = 0
    if vad is not None:
        targets = np.array([u.vad if u.vad is not None else (np.nan,) * 3 for u in utts], dtype=np.float64)
        has = ~np.isnan(targets).any(axis=1) if len(utts) else np.zeros(0, dtype=bool)
        n_vad = int(has.sum())
        if n_vad >= 2:
            ccc_by_dim = {name: ccc(targets[has, j], vad[has, j]) for j, name in enumerate(VAD_NAMES)}
    if not cls and ccc_by_dim is None:
        raise EvalError(f"{source}: no utterance has a label in {labels} or a V/A/D target to score against")
    preds = [
        {
            "path": str(u.path),
            "speaker": u.speaker,
            "label": u.label,
            "predicted": labels[int(y_pred[i])] if y_pred[i] >= 0 else None,
            "probabilities": None if mapped is None else [round(float(p), 5) for p in mapped[i]],
            "vad": None if vad is None else [round(float(v), 5) for v in vad[i]],
            "seconds": None if seconds is None else round(float(seconds[i]), 4),
        }
        for i, u in enumerate(utts)
    ]
    return EvalReport(
        source=source,
        label_set=labels,
        n=int(cls.get("n", 0)),
        ua=cls.get("ua"),
        wa=cls.get("wa"),
        macro_f1=cls.get("macro_f1"),
        weighted_f1=cls.get("weighted_f1"),
        recall=cls.get("recall", {}),
        confusion=cls.get("confusion", []),
        ccc=ccc_by_dim,
        n_vad=n_vad,
        unpredictable_labels=missing,
        corpora=dict(sorted(Counter(u.corpus for u in utts).items())),
        speakers=sorted({u.speaker for u in utts}),
        predictions=preds,
    )


def load_utterance_audio(
    utts: Sequence[Utterance], trim_db: float | None = 40.0, *, progress: bool = False
) -> list[np.ndarray]:
    """Decoded 16 kHz mono audio of each utterance, silence-trimmed like the training data."""
    from streamer.progress import progress_bar

    out = []
    with progress_bar(len(utts), "decode", enabled=progress) as bar:
        for u in utts:
            x = load_audio(u.path)
            out.append(trim_silence(x, trim_db) if trim_db is not None else x)
            bar.update(1)
    return out


def evaluate_with(
    score: ScoreFn,
    out_labels: Sequence[str],
    plan: WindowPlan,
    utts: Sequence[Utterance],
    label_set: str | Sequence[str],
    source: str,
    *,
    trim_db: float | None = 40.0,
    progress: bool = False,
) -> EvalReport:
    """Score utts with any scorer and compute the report (`progress`: bars on a terminal's stderr)."""
    from streamer.progress import progress_bar

    if not utts:
        raise EvalError(f"{source}: no utterances to evaluate")
    labels = resolve_label_set(label_set if isinstance(label_set, str) else list(label_set))
    audio = load_utterance_audio(utts, trim_db, progress=progress)
    with progress_bar(len(utts), "score", enabled=progress, unit="window") as bar:

        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        scores = score_utterances(audio, score, plan, on_batch=tick)
    seconds = [len(x) / SAMPLE_RATE for x in audio]
    return evaluate_scores(utts, scores.probabilities, scores.vad, out_labels, labels, source, seconds)


def evaluate_engine(
    engine_dir: Path | str,
    utts: Sequence[Utterance],
    label_set: str | Sequence[str] = "4",
    *,
    backend: str = "auto",
    threads: int | None = None,
    trim_db: float | None = 40.0,
    progress: bool = False,
) -> EvalReport:
    """Run the ONNX engine in `engine_dir` over every utterance and compute the report."""
    from engines import load_engine

    engine = load_engine(Path(engine_dir), backend=backend, intra_op_threads=threads)
    m = engine.manifest
    plan = WindowPlan.from_seconds(
        m.window_s, m.hop_s, m.min_window_s, m.max_window_s, m.padding, m.sample_rate
    )

    def score(batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        r = engine.infer(batch)
        return r.probabilities, r.vad

    source = f"{m.name} {m.version}"
    return evaluate_with(
        score, list(engine.labels), plan, utts, label_set, source, trim_db=trim_db, progress=progress
    )


def model_scorer(model: Any) -> ScoreFn:
    """Scorer over a torch EmotionModel (eval mode, no gradients, CPU)."""
    import torch

    model.eval()

    def score(batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        with torch.inference_mode():
            logits, vad = model(torch.from_numpy(batch))
        probs = torch.softmax(logits.float(), dim=1).numpy() if model.has_logits else None
        return probs, (vad.float().numpy() if model.has_vad else None)

    return score


def evaluate_model(
    model: Any,
    utts: Sequence[Utterance],
    label_set: str | Sequence[str] = "4",
    *,
    plan: WindowPlan | None = None,
    source: str = "model",
    trim_db: float | None = 40.0,
    progress: bool = False,
) -> EvalReport:
    """Evaluate an in-memory EmotionModel (default geometry: 2 s windows, 0.5 s hop, whole up to 8 s)."""
    plan = plan or WindowPlan.from_seconds(2.0, 0.5, 0.5, 8.0)
    score = model_scorer(model)
    return evaluate_with(
        score, list(model.labels), plan, utts, label_set, source, trim_db=trim_db, progress=progress
    )


def evaluate_checkpoint(
    checkpoint: Path | str,
    utts: Sequence[Utterance],
    label_set: str | Sequence[str] = "4",
    *,
    plan: WindowPlan | None = None,
    trim_db: float | None = 40.0,
    progress: bool = False,
) -> EvalReport:
    """Evaluate a trainer checkpoint (a run directory, whose `best` is used, or a checkpoint path)."""
    from training.checkpoints import load_checkpoint_model, resolve_checkpoint

    model = load_checkpoint_model(checkpoint)
    source = str(resolve_checkpoint(checkpoint))
    return evaluate_model(
        model, utts, label_set, plan=plan, source=source, trim_db=trim_db, progress=progress
    )


def merge_calm(utts: Sequence[Utterance]) -> list[Utterance]:
    """RAVDESS calm counted as neutral (for models trained that way); V/A/D targets stay calm's own."""
    return [dataclasses.replace(u, label="neutral") if u.label == "calm" else u for u in utts]


def write_report(report: EvalReport, out_dir: Path | str) -> Path:
    """metrics.json, confusion.png (row-normalised, counts annotated) and predictions.jsonl in out_dir."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        with (out / "predictions.jsonl").open("w") as f:
            for p in report.predictions:
                f.write(json.dumps(p) + "\n")
    except OSError as e:
        raise EvalError(f"cannot write the report to {out}: {e.strerror}") from None
    if report.confusion:
        plot_confusion(np.asarray(report.confusion), report.label_set, out / "confusion.png", report.source)
    return out / "metrics.json"


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """Confusion matrix image (rows: truth, normalised per row; each cell shows its count)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(rows, 1), dtype=np.float64)
    size = 1.2 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def default_figures(reports: dict[str, EvalReport]) -> dict[str, float | None]:
    """The headline figures from four-class and all-label reports."""
    four, every = reports["4"], reports["all"]
    return {"ua_4": four.ua, "wa_4": four.wa, "ua_all": every.ua, "wa_all": every.wa}


def evaluate_default_engine(
    engine_dir: Path | str | None,
    ravdess_root: Path | str,
    *,
    calm_as_neutral: bool = False,
    threads: int | None = None,
) -> tuple[dict[str, Any], dict[str, EvalReport]]:
    """The default engine's reported figures: four-class UA/WA and all-label UA on RAVDESS actors 19-24.

    `engine_dir` None means the bundled default engine. The four-class figure follows the usual protocol:
    calm utterances are excluded (`calm_as_neutral` counts them as neutral instead). The all-label figure
    covers all eight RAVDESS emotions; labels the engine lacks score recall 0 and are listed in
    `figures["unpredictable_all"]`.
    """
    from engines import resolve_engine_path
    from training.data.corpora import load_corpus
    from training.data.splits import default_split

    path = resolve_engine_path(engine_dir)
    test = default_split(load_corpus("ravdess", Path(ravdess_root))).test
    if calm_as_neutral:
        test = merge_calm(test)
    reports = {name: evaluate_engine(path, test, LABEL_SETS[name], threads=threads) for name in ("4", "all")}
    figures: dict[str, Any] = {
        **default_figures(reports),
        "n_4": reports["4"].n,
        "n_all": reports["all"].n,
        "calm_as_neutral": calm_as_neutral,
        "unpredictable_all": reports["all"].unpredictable_labels,
        "test_speakers": reports["4"].speakers,
    }
    return figures, reports
