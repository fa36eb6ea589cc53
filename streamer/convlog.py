"""Reading conversation logs (the JSON lines ``streamer.sinks.logfile`` writes) back into records.

Shared by ``emotrack report``, ``plot`` and ``replay``. A log may be cut short by a crash (a partial
last line, no ``stream_end``): such lines are skipped and counted, never fatal. Rotated parts
(``..._part2.jsonl``) of one session are merged back into one conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.errors import EmotrackError
from streamer.records import EmotionValues, EngineRef, UtteranceRecord, WindowRecord


class LogReadError(EmotrackError):
    """A path that is not a readable emotrack conversation log."""


@dataclass(slots=True)
class Conversation:
    """One stream's session: its header, window and utterance records in log order."""

    stream: str
    session: str | None
    header: dict[str, Any]
    paths: list[Path] = field(default_factory=list)
    windows: list[WindowRecord] = field(default_factory=list)
    utterances: list[UtteranceRecord] = field(default_factory=list)
    end: dict[str, Any] | None = None
    skipped_lines: int = 0

    @property
    def engine(self) -> EngineRef | None:
        e = self.header.get("engine")
        if isinstance(e, Mapping) and "name" in e:
            return EngineRef(str(e["name"]), str(e.get("version", "")))
        if self.windows:
            return self.windows[0].engine
        return None

    @property
    def labels(self) -> list[str]:
        """Labels seen in the probabilities, in first-seen order (the engine's order)."""
        out: list[str] = []
        for w in self.windows:
            for scores in (w.raw.scores, w.smoothed.scores):
                for k in scores or {}:
                    if k not in out:
                        out.append(k)
        return out

    @property
    def has_vad(self) -> bool:
        return any(w.raw.valence is not None for w in self.windows)

    @property
    def source_audio(self) -> Path | None:
        """The recorded audio named by the header (``"source": PATH`` or ``{"path": PATH}``), if any."""
        src = self.header.get("source")
        if isinstance(src, Mapping):
            src = src.get("path")
        if isinstance(src, str) and src:
            return Path(src.removeprefix("file:")).expanduser()
        return None

    @property
    def duration(self) -> float:
        """The stream's audio seconds as recorded at its end; for logs without it (older, or cut short by
        a crash), the end of the last window or utterance."""
        recorded = (self.end or {}).get("audio_s")
        if isinstance(recorded, int | float) and not isinstance(recorded, bool):
            return float(recorded)
        ends = [w.end for w in self.windows] + [u.end for u in self.utterances]
        return max(ends, default=0.0)


def values_from_dict(d: Any) -> EmotionValues:
    """``EmotionValues.to_dict`` inverted; missing parts become None."""
    if not isinstance(d, Mapping):
        return EmotionValues(None, None, None, None, None)
    scores = d.get("scores")
    return EmotionValues(
        label=d.get("label"),
        scores=None if not isinstance(scores, Mapping) else {str(k): float(v) for k, v in scores.items()},
        valence=_num(d.get("valence")),
        arousal=_num(d.get("arousal")),
        dominance=_num(d.get("dominance")),
    )


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _engine(d: Mapping[str, Any]) -> EngineRef:
    e = d.get("engine") or {}
    return EngineRef(str(e.get("name", "?")), str(e.get("version", "?")))


def window_from_dict(d: Mapping[str, Any]) -> WindowRecord:
    return WindowRecord(
        stream=str(d["stream"]),
        seq=int(d["seq"]),
        utterance=int(d["utterance"]),
        window=int(d["window"]),
        start=float(d["start"]),
        end=float(d["end"]),
        wall_time=float(d.get("wall_time", 0.0)),
        raw=values_from_dict(d.get("raw")),
        smoothed=values_from_dict(d.get("smoothed")),
        engine=_engine(d),
    )


def utterance_from_dict(d: Mapping[str, Any]) -> UtteranceRecord:
    return UtteranceRecord(
        stream=str(d["stream"]),
        seq=int(d["seq"]),
        utterance=int(d["utterance"]),
        start=float(d["start"]),
        end=float(d["end"]),
        wall_time=float(d.get("wall_time", 0.0)),
        windows=int(d.get("windows", 0)),
        dropped=int(d.get("dropped", 0)),
        summary=values_from_dict(d.get("summary")),
        engine=_engine(d),
    )


def log_files(paths: Iterable[Path]) -> list[Path]:
    """The ``.jsonl`` files named, directories searched recursively; LogReadError for a missing path."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.rglob("*.jsonl"))
            if not found:
                raise LogReadError(f"{p}: no conversation logs (*.jsonl) in this directory")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise LogReadError(f"{p}: no such log file")
    return out


def _read_file(path: Path) -> list[Conversation]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise LogReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    convs: list[Conversation] = []
    current: Conversation | None = None
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kind = d.get("type") if isinstance(d, dict) else None
            if kind == "session":
                current = Conversation(str(d.get("stream", "?")), d.get("session"), d, [path])
                convs.append(current)
                continue
            if kind not in ("window", "utterance", "stream_end"):
                skipped += 1
                continue
            if current is None:  # records without a header (a hand-cut file): one anonymous session
                current = Conversation(str(d.get("stream", "?")), None, {}, [path])
                convs.append(current)
            if kind == "window":
                current.windows.append(window_from_dict(d))
            elif kind == "utterance":
                current.utterances.append(utterance_from_dict(d))
            else:
                current.end = d
        except (ValueError, KeyError, TypeError):
            skipped += 1  # a line cut by a crash, or not ours
    if not convs:
        raise LogReadError(f"{path}: not an emotrack conversation log (no session or record lines)")
    convs[-1].skipped_lines += skipped
    return convs


def read_conversations(paths: Iterable[Path]) -> list[Conversation]:
    """Every conversation in ``paths`` (files or directories), rotated parts merged, by start time."""
    merged: dict[tuple[str, str], Conversation] = {}
    order: list[tuple[str, str]] = []
    for i, path in enumerate(log_files(paths)):
        for j, conv in enumerate(_read_file(path)):
            key = (conv.stream, conv.session or f"#{i}.{j}")
            have = merged.get(key)
            if have is None:
                merged[key] = conv
                order.append(key)
                continue
            have.paths.extend(conv.paths)
            have.windows.extend(conv.windows)
            have.utterances.extend(conv.utterances)
            have.end = conv.end or have.end
            have.skipped_lines += conv.skipped_lines
            if int(conv.header.get("part", 1)) < int(have.header.get("part", 1)):
                have.header = conv.header
    out = [merged[k] for k in order]
    for c in out:
        c.windows.sort(key=lambda w: (w.seq, w.end))
        c.utterances.sort(key=lambda u: (u.seq, u.end))
    return sorted(out, key=lambda c: (str(c.header.get("started", "")), c.stream))
