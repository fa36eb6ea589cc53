"""Per-stream figures through the daemon itself: VAD, 2 s windows, batcher, engine, tracker, centring.

`emotrack evaluate --streams` replays whole-clip scores through the centring class; the daemon centres 2 s
windows every 0.5 s. Here each actor's clips are joined into one audio file (seeded orders as in
`training.stream_eval`, untrimmed, 0.5 s of silence between clips), every file is one stream of one unpaced
`Daemon` run with centring off, and each centring setting is then replayed over the recorded windows by
`streamer.replay.resmooth` (what `emotrack replay` does to a log). A clip's prediction is the
duration-weighted mean of the summaries of the utterances the VAD found in it.

--test: the bundled engine on RAVDESS actors 19-24. --cv RUN_PREFIX...: fold k's runs (PREFIX_fk, averaged)
exported as an engine under WORK, streaming fold k's actors (3k+1..3k+3); actors 19-24 are not read.
--grid: the rule's 18 settings and its pick (docs/default-engine.md); else the `[centring]` defaults.
Usage: python -m training.stream_daemon CORPORA_DIR WORK_DIR (--test | --cv PREFIX...) [--grid]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamer.centring import CentringConfig
from streamer.commands.predict import Collector
from streamer.convlog import Conversation
from streamer.records import UtteranceRecord, WindowRecord
from streamer.replay import resmooth
from streamer.smoothing import SmoothingConfig
from training.data.corpora import load_corpus
from training.data.dataset import SAMPLE_RATE, load_audio
from training.data.labels import LABEL_SETS
from training.data.splits import default_split, devfold_actors, ravdess_actor
from training.data.types import Utterance
from training.metrics import unweighted_accuracy
from training.stream_eval import MIXES, Mix, mix_rows

GAP_S = 0.5
LABELS = LABEL_SETS["4"]
SEEDS = (0, 1, 2, 3, 4)
Spans = dict[str, list[tuple[float, float, int]]]  # per stream: each clip's (start, end, truth or -1)
Recorded = dict[str, list[WindowRecord | UtteranceRecord]]  # per stream, in order


def write_streams(utts: list[Utterance], mix: Mix, seed: int, out: Path) -> Spans:
    """One WAV per speaker, the clips of the mix in the seed's order (as `stream_figures` draws them)."""
    speakers, kinds = [u.speaker for u in utts], [u.label for u in utts]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    spans: Spans = {}
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for speaker in sorted(set(speakers)):
        parts, t = [], 0.0
        spans[speaker] = []
        for r in mix_rows(kinds, speakers, speaker, mix, rng):
            x, label = load_audio(utts[int(r)].path), utts[int(r)].label
            spans[speaker].append(
                (t, t + len(x) / SAMPLE_RATE, LABELS.index(label) if label in LABELS else -1)
            )
            parts += [x, gap]
            t += (len(x) + len(gap)) / SAMPLE_RATE
        sf.write(out / f"{speaker}.wav", np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return spans


async def record(engine_dir: Path | None, files: list[Path]) -> Recorded:
    """Window and utterance records of one daemon run over the files (one stream each), centring off."""
    from streamer.config import load_config
    from streamer.daemon import Daemon
    from streamer.service import load_configured_engine
    from streamer.sources.spec import SourceSpec, open_source

    flags: dict[str, Any] = {"logs": {"enabled": False}, "stdout": "off", "centring": {"enabled": False}}
    if engine_dir is not None:
        flags["engine"] = {"path": str(engine_dir)}
    cfg = load_config(None, flags=flags)
    cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, realtime=False))
    engine = await load_configured_engine(cfg)
    opened: list[tuple[SourceSpec, Any]] = []
    for f in files:
        spec = SourceSpec(kind="file", target=str(f), stream_id=f.stem, text=str(f))
        opened.append((spec, open_source(spec, chunk_ms=cfg.inference.chunk_ms)))
    collector = Collector()
    await Daemon(cfg, engine, [collector], sources=opened).run()
    return {
        s: [r for r in recs if isinstance(r, WindowRecord | UtteranceRecord)]
        for s, recs in collector.records.items()
    }


def centred_utterances(
    records: list[WindowRecord | UtteranceRecord], centring: CentringConfig
) -> list[UtteranceRecord]:
    windows = [r for r in records if isinstance(r, WindowRecord)]
    conv = Conversation(stream=windows[0].stream, session=None, header={}, windows=windows,
                        utterances=[r for r in records if isinstance(r, UtteranceRecord)])  # fmt: skip
    return [r for r in resmooth(conv, SmoothingConfig(), centring) if isinstance(r, UtteranceRecord)]


def clip_predictions(
    spans: Spans, utterances: dict[str, list[UtteranceRecord]]
) -> tuple[list[int], list[int]]:
    """Per labelled clip: truth and the argmax of its utterances' summaries, weighted by overlap; a clip the
    VAD heard nothing in is predicted -1 (wrong)."""
    truth, pred = [], []
    for stream, clips in spans.items():
        for start, end, y in clips:
            if y < 0:
                continue
            total = np.zeros(len(LABELS))
            for u in utterances.get(stream, []):
                overlap = min(end, u.end) - max(start, u.start)
                if overlap > 0 and u.summary.scores is not None:
                    total += overlap * np.array([u.summary.scores[k] for k in LABELS])
            truth.append(y)
            pred.append(int(np.argmax(total)) if total.any() else -1)
    return truth, pred


def fold_engine(prefixes: Sequence[str], fold: int, work: Path) -> Path:
    """Fold `fold`'s runs averaged and exported as an engine under WORK (kept for later calls)."""
    out = work / f"engine_f{fold}"
    if (out / "engine.json").is_file():
        return out
    from training.cv_ensemble import load_runs
    from training.pipeline import export_model_engine

    model = load_runs([Path(f"{p}_f{fold}") for p in prefixes])
    provenance = {"training_data": f"cross-validation fold {fold} of {', '.join(prefixes)}"}
    engine_dir, parity = export_model_engine(
        model, out, name="cv-fold", version=str(fold), provenance=provenance
    )
    if not parity.passed:
        raise SystemExit(f"fold {fold}: export parity failed: {parity}")
    return engine_dir


def jobs(args: argparse.Namespace, work: Path) -> list[tuple[Path | None, list[Utterance]]]:
    ravdess = load_corpus("ravdess", args.corpora / "ravdess")
    if args.test:
        return [(None, default_split(ravdess).test)]
    out: list[tuple[Path | None, list[Utterance]]] = []
    for k in range(6):
        actors = {ravdess_actor(a) for a in devfold_actors(6, k)}
        out.append((fold_engine(args.cv, k, work), [u for u in ravdess if u.speaker in actors]))
    return out


def settings(grid: bool) -> list[CentringConfig]:
    if not grid:
        return [CentringConfig()]
    return [
        CentringConfig(strength=s, warmup_s=w, estimator=e)  # type: ignore[arg-type]
        for e, s, w in itertools.product(("mean", "balanced"), (0.5, 0.75, 1.0), (0.0, 10.0, 30.0))
    ]


Pooled = dict[tuple[Mix, int], tuple[Spans, Recorded]]


def record_streams(
    jobs: Sequence[tuple[Path | None, list[Utterance]]],
    work: Path,
    mixes: Sequence[Mix] = MIXES,
    seeds: Sequence[int] = SEEDS,
) -> Pooled:
    """Per (mix, seed): every job's streams written, run through the daemon with its engine, pooled."""
    pooled: Pooled = {}
    for engine_dir, utts in jobs:
        for mix, seed in itertools.product(mixes, seeds):
            folder = work / "audio" / f"{mix}_s{seed}"
            spans = write_streams(utts, mix, seed, folder)
            recs = asyncio.run(record(engine_dir, [folder / f"{s}.wav" for s in spans]))
            both = pooled.setdefault((mix, seed), ({}, {}))
            both[0].update(spans)
            both[1].update(recs)
    return pooled


def score_setting(pooled: Pooled, cfg: CentringConfig) -> dict[Mix, list[float]]:
    """Four-class UA per mix (one figure per seed) with the centring replayed over the recorded windows."""
    ua: dict[Mix, list[float]] = {}
    for (mix, _seed), (spans, recs) in sorted(pooled.items()):
        utterances = {s: centred_utterances(r, cfg) for s, r in recs.items()}
        truth, pred = clip_predictions(spans, utterances)
        ua.setdefault(mix, []).append(unweighted_accuracy(np.array(truth), np.array(pred), len(LABELS)))
    return ua


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("corpora", type=Path)
    ap.add_argument("work", type=Path)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--test", action="store_true")
    which.add_argument("--cv", nargs="+", metavar="RUN_PREFIX")
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args()
    pooled = record_streams(jobs(args, args.work), args.work)
    rows = []
    for cfg in [CentringConfig(enabled=False), *settings(args.grid)]:
        ua = score_setting(pooled, cfg)
        rows.append((cfg, {m: float(np.mean(v)) for m, v in ua.items()}))
        name = (
            "off"
            if not cfg.enabled
            else f"{cfg.estimator} strength {cfg.strength:.2f} warm-up {cfg.warmup_s:.0f} s"
        )
        figures = " | ".join(
            f"{m} {np.mean(v):.6f} ({' '.join(f'{x:.3f}' for x in v)})" for m, v in ua.items()
        )
        print(f"{name:38s} | {figures}", flush=True)
    if args.grid:
        pick(rows)


def pick(rows: list[tuple[CentringConfig, dict[Mix, float]]]) -> None:
    """The rule on window-level figures (rows[0]: centring off)."""
    off = rows[0][1]
    allowed = [r for r in rows[1:] if r[1]["mostly-neutral"] >= off["mostly-neutral"] - 0.01]
    if not allowed:
        print("rule: no setting keeps the mostly-neutral streams within one point: centring off")
        return
    cfg, best = max(
        allowed,
        key=lambda r: (
            round(r[1]["as-recorded"], 6),
            r[0].estimator == "mean",
            -r[0].strength,
            r[0].warmup_s,
        ),
    )
    gain = best["as-recorded"] - off["as-recorded"]
    verdict = "counts" if gain >= 0.02 else "does not count (gain below two points): centring off"
    neutral = best["mostly-neutral"] - off["mostly-neutral"]
    print(f"rule: pick {cfg.estimator}, strength {cfg.strength}, warm-up {cfg.warmup_s:.0f} s: "
          f"as recorded {gain:+.3f}, mostly neutral {neutral:+.3f}: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
