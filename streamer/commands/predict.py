"""``emotrack predict``: whole-file emotion of audio files, through the daemon's VAD, windows and engine.

Offline and unpaced: files are read as fast as they decode and scored in shared batches. One line
per file, in argument order; an unreadable file prints one error line and the others still print.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamer.records import Record, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd

HELP = "print the emotion of whole audio files"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("predict", help=HELP, description=HELP)
    p.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="audio files (any format libsndfile reads)"
    )
    p.add_argument(
        "--engine", type=Path, metavar="DIR", help="engine directory or bundled name: default | fast"
    )
    p.add_argument("--backend", default=None, help="engine backend (auto, onnxruntime-cpu, ...)")
    p.add_argument("-c", "--config", type=Path, help="TOML config (vad/windows/inference/smoothing sections)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", default=True, help="one JSON object per file (default)")
    out.add_argument("--text", dest="json", action="store_false", help="readable text instead of JSON lines")
    p.add_argument(
        "--track",
        action="store_true",
        help="add the per-window track, raw and smoothed (JSON: a 'track' list; text: one line per window)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown on a terminal's stderr only)"
    )
    return p


class Collector:
    """A sink that keeps every record per stream (the predict command's only output).

    `on_end` is called once per finished stream (the progress bar's tick).
    """

    def __init__(self, on_end: Callable[[str], None] | None = None) -> None:
        self.records: dict[str, list[Record]] = defaultdict(list)
        self._on_end = on_end

    async def start(self) -> None:
        return None

    async def emit(self, record: Record) -> None:
        self.records[record.stream].append(record)

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        if self._on_end is not None:
            self._on_end(stream)

    async def close(self) -> None:
        return None


def summarise(path: Path, duration: float, records: list[Record], track: bool) -> dict[str, Any]:
    """Mean of the windows' raw probabilities and V/A/D; label = the most probable class."""
    windows = [r for r in records if isinstance(r, WindowRecord)]
    utterances = [r for r in records if isinstance(r, UtteranceRecord)]
    out: dict[str, Any] = {"file": str(path), "label": None, "scores": None}
    probs = [w.raw.scores for w in windows if w.raw.scores is not None]
    if probs:
        labels = list(probs[0])
        mean = {k: round(sum(p[k] for p in probs) / len(probs), 4) for k in labels}
        out["scores"] = mean
        out["label"] = max(mean, key=mean.__getitem__)
    for key in ("valence", "arousal", "dominance"):
        vals = [getattr(w.raw, key) for w in windows if getattr(w.raw, key) is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
    out["duration"] = round(duration, 3)
    out["speech_seconds"] = round(sum(u.end - u.start for u in utterances), 3)
    out["windows"] = len(windows)
    lost = sum(u.dropped for u in utterances)
    if lost:
        out["windows_lost"] = lost  # cut but not scored: the engine failed on them
    if not windows:
        out["note"] = f"{lost} windows not scored (engine failed)" if lost else "no speech found"
    if track:
        out["track"] = [
            {
                k: v
                for k, v in w.to_dict().items()
                if k not in ("type", "schema", "stream", "engine", "wall_time")
            }
            for w in windows
        ]
    return out


def _emotion(d: dict[str, Any]) -> str:
    """``label p v=.. a=.. d=..`` of a summary or a window's raw/smoothed scores."""
    p = f" {d['scores'][d['label']]:.2f}" if d.get("scores") and d.get("label") else ""
    vad = " ".join(f"{k[0]}={d[k]:+.2f}" for k in ("valence", "arousal", "dominance") if d.get(k) is not None)
    return f"{d.get('label') or '-'}{p} {vad}".rstrip()


def text_line(d: dict[str, Any]) -> str:
    """The file's line, then with ``--track`` one indented line per window (raw, then smoothed)."""
    if d["label"] is None and d["valence"] is None:
        return f"{d['file']}: {d.get('note', 'no speech found')} ({d['duration']:.2f} s)"
    head = (
        f"{d['file']}: {_emotion(d)} "
        f"(speech {d['speech_seconds']:.2f} of {d['duration']:.2f} s, {d['windows']} windows)"
    )
    rows = [
        f"  {w['start']:7.2f}-{w['end']:.2f} s  {_emotion(w['raw'])}  | smoothed {_emotion(w['smoothed'])}"
        for w in d.get("track", [])
    ]
    return "\n".join([head, *rows])


async def predict(args: argparse.Namespace) -> int:
    from streamer.config import load_config
    from streamer.daemon import Daemon
    from streamer.progress import progress_bar
    from streamer.service import load_configured_engine
    from streamer.sources.base import SourceError
    from streamer.sources.spec import SourceSpec, open_source

    flags: dict[str, Any] = {"logs": {"enabled": False}, "stdout": "off"}
    if args.engine is not None:
        flags["engine"] = {"path": str(args.engine)}
    if args.backend is not None:
        flags.setdefault("engine", {})["backend"] = args.backend
    cfg = load_config(args.config, flags=flags)
    cfg = dataclasses.replace(cfg, sources=(), daemon=dataclasses.replace(cfg.daemon, realtime=False))
    engine = await load_configured_engine(cfg)
    failed = 0
    errors: dict[int, str] = {}
    opened: list[tuple[SourceSpec, Any]] = []
    durations: dict[str, float] = {}
    for i, path in enumerate(args.files):
        spec = SourceSpec(kind="file", target=str(path), stream_id=f"f{i}", text=str(path))
        try:
            src = open_source(spec, chunk_ms=cfg.inference.chunk_ms)
        except SourceError as exc:
            errors[i] = str(exc)
            continue
        rate, frames = getattr(src, "samplerate", 0), getattr(src, "frames", 0)
        durations[spec.stream_id] = frames / rate if rate else 0.0
        opened.append((spec, src))
    bar = progress_bar(len(opened), "predict", enabled=not args.no_progress)
    reasons: dict[str, str] = {}  # kept here: the daemon remembers only its latest ended streams

    def ended(stream: str) -> None:
        if daemon is not None:
            reasons[stream] = daemon.end_reasons.get(stream, "eof")
        bar.update(1)

    collector = Collector(on_end=ended)
    daemon = Daemon(cfg, engine, [collector], sources=opened) if opened else None
    try:
        if daemon is not None:
            await daemon.run()
    finally:
        bar.close()
    for i, path in enumerate(args.files):
        sid = f"f{i}"
        if i not in errors and daemon is not None:
            reason = reasons.get(sid)
            if reason and reason.startswith("error"):
                errors[i] = f"{path}: {reason}"
        if i in errors:
            failed += 1
            print(f"emotrack: error: {' '.join(errors[i].split())}", file=sys.stderr, flush=True)
            continue
        d = summarise(path, durations.get(sid, 0.0), collector.records.get(sid, []), args.track)
        print(json.dumps(d, ensure_ascii=False) if args.json else text_line(d), flush=True)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(predict(args))
