"""Terminal output for interactive use: one readable line per window/utterance, or JSON lines.

Lines are written by a worker thread so a paused terminal or a slow pipe (``| less``) costs
dropped lines (counted), never a stalled pipeline. A closed pipe (``| head``) stops the output
quietly.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TextIO

from streamer.records import EmotionValues, Record, StateRecord, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd, record_json, to_json
from streamer.sinks.worker import BoundedWorker


@dataclass(frozen=True, slots=True)
class StdoutConfig:
    json: bool = False  # raw JSON lines (every record, state included) instead of text
    show_state: bool = False  # text mode: also print state records
    show_raw: bool = True  # text mode: append the unsmoothed label of each window
    queue_size: int = 1000


class StdoutSink:
    """Prints records to ``out`` (default: sys.stdout)."""

    def __init__(self, cfg: StdoutConfig | None = None, *, out: TextIO | None = None) -> None:
        self.cfg = cfg or StdoutConfig()
        self._out = out
        self._broken = False
        self._worker: BoundedWorker[str] = BoundedWorker("emotrack-stdout", self._write, self.cfg.queue_size)

    async def start(self) -> None:
        self._worker.start()

    async def emit(self, record: Record) -> None:
        line = record_json(record) if self.cfg.json else format_record(record, self.cfg)
        if line is not None:
            self._worker.put(line)

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        if self.cfg.json:
            self._worker.put(to_json({"type": "stream_end", "stream": stream}))
        else:
            self._worker.put(f"[{stream}] stream ended")

    async def flush(self) -> None:
        await self._worker.drain()

    async def close(self) -> None:
        await self._worker.stop()

    @property
    def dropped(self) -> int:
        return self._worker.dropped

    def counters(self) -> dict[str, int]:
        return {"dropped": self._worker.dropped, "queued": self._worker.queued}

    def _write(self, line: str) -> None:
        if self._broken:
            return
        out = self._out if self._out is not None else sys.stdout
        try:
            out.write(line + "\n")
            out.flush()
        except BrokenPipeError:
            self._broken = True  # reader went away (e.g. `| head`): stop quietly
            if out is sys.stdout:
                # Python's own flush at exit would hit the closed pipe again and complain;
                # point fd 1 at /dev/null as the Python docs recommend for SIGPIPE handling.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)


def format_record(record: Record, cfg: StdoutConfig | None = None) -> str | None:
    """One human-readable line, or None for records this mode does not show."""
    cfg = cfg or StdoutConfig()
    if isinstance(record, WindowRecord):
        text = f"[{record.stream}] {record.start:.2f}-{record.end:.2f}s  {_emotion(record.smoothed)}"
        if cfg.show_raw:
            text += f"  (raw {_label(record.raw)})"
        return text
    if isinstance(record, UtteranceRecord):
        dropped = f", {record.dropped} dropped" if record.dropped else ""
        plural = "" if record.windows == 1 else "s"
        return (
            f"[{record.stream}] utterance {record.utterance}: {record.start:.2f}-{record.end:.2f}s "
            f"({record.end - record.start:.1f}s, {record.windows} window{plural}{dropped})  "
            f"{_emotion(record.summary)}"
        )
    if isinstance(record, StateRecord):
        if not cfg.show_state:
            return None
        return f"[{record.stream}] {record.status} at {record.audio_time:.2f}s  {_emotion(record.current)}"
    return None


def _label(v: EmotionValues) -> str:
    if v.label is None:
        return "-"
    if v.scores and v.label in v.scores:
        return f"{v.label} {v.scores[v.label]:.2f}"
    return v.label


def _emotion(v: EmotionValues) -> str:
    label = _label(v)
    if v.valence is None and v.arousal is None and v.dominance is None:
        return label
    return f"{label:<13}  V{_signed(v.valence)} A{_signed(v.arousal)} D{_signed(v.dominance)}"


def _signed(x: float | None) -> str:
    return "  -  " if x is None else f"{x:+.2f}"
