"""Re-scoring or re-smoothing a recorded conversation into a new conversation log.

Audio goes through the daemon itself (``Daemon`` with a file source, unpaced: the same segmenter,
batcher, tracker and log sink as live). A log is re-smoothed by feeding its raw window scores, in
``seq`` order, to a fresh ``StreamTracker`` with the new smoothing settings (windows lost under
overload stay lost and counted); with ``--engine`` and a header naming the source audio
(``"source": PATH``) that still exists, the audio is re-scored instead.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.centring import CentringConfig
from streamer.config import EmotrackConfig
from streamer.convlog import Conversation, read_conversations
from streamer.errors import EmotrackError
from streamer.messages import SAMPLE_RATE, Scores, SpeechWindow, UtteranceEnded
from streamer.records import Record, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd
from streamer.sinks.logfile import ConversationLog, LogConfig
from streamer.smoothing import SmoothingConfig
from streamer.tracker import StreamTracker


class ReplayError(EmotrackError):
    """The input cannot be replayed as asked (no audio to re-score, engine without matching heads)."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    stream: str
    mode: str  # "rescored" | "resmoothed"
    windows: int
    utterances: int
    log: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "mode": self.mode,
            "windows": self.windows,
            "utterances": self.utterances,
            "log": None if self.log is None else str(self.log),
        }


_EMPTY = np.zeros(0, dtype=np.float32)


def is_log(path: Path) -> bool:
    """A ``.jsonl`` file (or a directory of them) is a log; anything else is audio."""
    return path.is_dir() or path.suffix.lower() in (".jsonl", ".json")


def _log_config(cfg: EmotrackConfig, out_dir: Path) -> LogConfig:
    lg = cfg.logs
    return LogConfig(out_dir, rotate_bytes=lg.rotate_bytes, rotate_seconds=None, fsync=lg.fsync)


def estimate_hop(conv: Conversation) -> float:
    """The window hop of the original run: the median start step inside utterances (0.5 s if unknown)."""
    steps = [
        b.start - a.start
        for a, b in zip(conv.windows, conv.windows[1:], strict=False)
        if a.utterance == b.utterance and b.start > a.start
    ]
    return round(statistics.median(steps), 4) if steps else 0.5


def _scores(w: WindowRecord) -> Scores:
    r = w.raw
    vad = None
    if r.valence is not None and r.arousal is not None and r.dominance is not None:
        vad = (r.valence, r.arousal, r.dominance)
    return Scores(probabilities=r.scores, vad=vad)


def resmooth(
    conv: Conversation, smoothing: SmoothingConfig, centring: CentringConfig | None = None
) -> list[Record]:
    """The conversation's records again, from its raw scores, under ``smoothing`` (hop from the log)
    and, when given, the stream ``centring``."""
    engine = conv.engine
    labels = conv.labels or None
    if engine is None or (labels is None and not conv.has_vad):
        raise ReplayError(f"{conv.paths[0]}: stream {conv.stream} has no scored windows to re-smooth")
    cfg = dataclasses.replace(smoothing, hop_s=estimate_hop(conv))
    tracker = StreamTracker(conv.stream, engine, labels, conv.has_vad, cfg, centring=centring)
    events: list[WindowRecord | UtteranceRecord] = [*conv.windows, *conv.utterances]
    events.sort(key=lambda r: (r.seq, isinstance(r, UtteranceRecord)))
    dropped_done: set[int] = set()
    out: list[Record] = []
    for r in events:
        if isinstance(r, WindowRecord):
            win = SpeechWindow(
                conv.stream,
                r.utterance,
                r.window,
                round(r.start * SAMPLE_RATE),
                round(r.end * SAMPLE_RATE),
                _EMPTY,
                r.wall_time,
            )
            rec = tracker.on_window(win, _scores(r))
            if rec is not None:
                out.append(rec)
            continue
        if r.dropped and r.utterance not in dropped_done:  # keep the overload count of the original
            dropped_done.add(r.utterance)
            lost = SpeechWindow(conv.stream, r.utterance, -1, 0, 0, _EMPTY, r.wall_time)
            for _ in range(r.dropped):
                tracker.on_window(lost, None)
        start, end = round(r.start * SAMPLE_RATE), round(r.end * SAMPLE_RATE)
        out.append(
            tracker.on_utterance_end(
                UtteranceEnded(conv.stream, r.utterance, start, end, r.wall_time, r.windows)
            )
        )
    return out


async def write_log(
    groups: Sequence[tuple[str, Sequence[Record]]],
    log_cfg: LogConfig,
    sources: Mapping[str, str] | None = None,
) -> list[Path | None]:
    """Write each group as one session through the real conversation-log sink; their paths."""
    sink = ConversationLog(log_cfg, sources=sources)
    await sink.start()
    paths: list[Path | None] = []
    try:
        for stream, records in groups:
            for rec in records:
                await sink.emit(rec)
            await sink.flush()
            paths.append(sink.current_path(stream))
            await sink.stream_ended(stream)
            await sink.flush()
    finally:
        await sink.close()
    return paths


async def rescore_audio(
    audio: Path, stream_id: str, cfg: EmotrackConfig, out_dir: Path, engine: Any = None
) -> ReplayResult:
    """Run ``audio`` through the daemon (unpaced) into a new log under ``out_dir``."""
    from streamer.daemon import Daemon
    from streamer.service import load_configured_engine
    from streamer.sources.spec import SourceSpec, open_source

    cfg = dataclasses.replace(
        cfg,
        sources=(),
        stdout="off",
        daemon=dataclasses.replace(cfg.daemon, realtime=False, watchdog=False),
        logs=dataclasses.replace(cfg.logs, enabled=True, directory=out_dir),
    )
    spec = SourceSpec(kind="file", target=str(audio), stream_id=stream_id, text=str(audio))
    src = open_source(spec, chunk_ms=cfg.inference.chunk_ms)
    if engine is None:
        engine = await load_configured_engine(cfg)
    log = ConversationLog(_log_config(cfg, out_dir), sources={stream_id: str(audio.resolve())})
    counter = _Counter(log)
    daemon = Daemon(cfg, engine, [counter], sources=[(spec, src)])
    t0 = time.time()
    await daemon.run()
    reason = daemon.end_reasons.get(stream_id, "")
    if reason.startswith("error"):
        raise ReplayError(f"{audio}: {reason}")
    path = _newest_log(out_dir, stream_id, t0)
    return ReplayResult(stream_id, "rescored", counter.windows, counter.utterances, path)


class _Counter:
    """Passes records to the log sink, counting them (the replay summary line)."""

    def __init__(self, log: ConversationLog) -> None:
        self.log = log
        self.windows = 0
        self.utterances = 0

    async def start(self) -> None:
        await self.log.start()

    async def emit(self, record: Record) -> None:
        self.windows += isinstance(record, WindowRecord)
        self.utterances += isinstance(record, UtteranceRecord)
        await self.log.emit(record)

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        await self.log.stream_ended(stream, end)

    async def close(self) -> None:
        await self.log.close()


def _newest_log(out_dir: Path, stream_id: str, since: float) -> Path | None:
    from streamer.sinks.base import safe_name

    found = [p for p in (out_dir / safe_name(stream_id)).glob("*.jsonl") if p.stat().st_mtime >= since - 1]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


async def replay(
    source: Path,
    cfg: EmotrackConfig,
    out_dir: Path,
    *,
    rescore: bool,
    stream_id: str | None = None,
) -> list[ReplayResult]:
    """Replay one audio file or log (see the module docstring); one result per stream written."""
    if not source.exists():
        raise ReplayError(f"{source}: no such file")
    if not is_log(source):
        from streamer.sources.spec import parse_spec

        sid = stream_id or parse_spec(f"file:{source}").stream_id
        return [await rescore_audio(source, sid, cfg, out_dir)]
    convs = read_conversations([source])
    results: list[ReplayResult] = []
    if rescore:
        engine = None
        for conv in convs:
            audio = conv.source_audio
            if audio is None or not audio.is_file():
                what = "names no source audio" if audio is None else f"names source audio {audio}, absent"
                raise ReplayError(
                    f"{conv.paths[0]}: the log {what}; re-scoring with another engine needs the audio "
                    "(without --engine the log is re-smoothed from its raw scores)"
                )
            if engine is None:
                from streamer.service import load_configured_engine

                engine = await load_configured_engine(cfg)
            results.append(await rescore_audio(audio, stream_id or conv.stream, cfg, out_dir, engine))
        return results
    groups: list[tuple[str, Sequence[Record]]] = []
    for conv in convs:
        recs: list[Record] = resmooth(conv, cfg.smoothing, cfg.centring)
        if stream_id is not None:
            recs = [dataclasses.replace(r, stream=stream_id) for r in recs]
        groups.append((stream_id or conv.stream, recs))
    sources = {
        stream_id or c.stream: str(c.source_audio) for c in convs if c.source_audio is not None
    }  # a re-smoothed log still names its audio
    paths = await write_log(groups, _log_config(cfg, out_dir), sources)
    for (stream, written), path in zip(groups, paths, strict=True):
        n_w = sum(isinstance(r, WindowRecord) for r in written)
        n_u = sum(isinstance(r, UtteranceRecord) for r in written)
        results.append(ReplayResult(stream, "resmoothed", n_w, n_u, path))
    return results
