"""``emotrack listen --live``: a terminal table of every stream's current emotion and recent history.

Fed by the same MQTT messages as the line mode: state records set each stream's current values,
window records append the smoothed valence/arousal and label to a short history drawn as
sparklines and a strip of label colours. rich is an optional extra, imported lazily.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from streamer.errors import EmotrackError
from streamer.plot import LABEL_COLOURS

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 40  # windows of history per stream
MAX_STREAMS = 64  # rows kept; the least recently updated stream is forgotten beyond


class LiveViewError(EmotrackError):
    """rich is not installed."""


def spark(values: Any, lo: float = -1.0, hi: float = 1.0) -> str:
    """Values in [lo, hi] as block characters (None/NaN as a space)."""
    out = []
    for v in values:
        if v is None or v != v:
            out.append(" ")
            continue
        x = min(max((float(v) - lo) / (hi - lo), 0.0), 1.0)
        out.append(SPARK[round(x * (len(SPARK) - 1))])
    return "".join(out)


@dataclass(slots=True)
class StreamView:
    stream: str
    status: str = "-"
    label: str | None = None
    confidence: float | None = None
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    audio_time: float = 0.0
    valence_hist: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    arousal_hist: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    label_hist: deque[str | None] = field(default_factory=lambda: deque(maxlen=HISTORY))


class LiveModel:
    """Per-stream state built from the daemon's MQTT messages."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self.streams: OrderedDict[str, StreamView] = OrderedDict()
        self.messages = 0
        self.daemon_status: str | None = None

    def _view(self, stream: str) -> StreamView:
        v = self.streams.get(stream)
        if v is None:
            v = self.streams[stream] = StreamView(stream)
            while len(self.streams) > MAX_STREAMS:
                self.streams.popitem(last=False)
        return v

    def update(self, topic: str, payload: bytes) -> None:
        self.messages += 1
        if topic == f"{self.prefix}/status":
            self.daemon_status = payload.decode(errors="replace").strip()
            return
        try:
            d = json.loads(payload)
        except ValueError:
            return
        if not isinstance(d, dict) or "stream" not in d:
            return
        kind = d.get("type")
        if kind == "state":
            v = self._view(str(d["stream"]))
            cur = d.get("current") or {}
            v.status = str(d.get("status", "-"))
            v.audio_time = float(d.get("audio_time") or 0.0)
            v.label, v.valence, v.arousal, v.dominance = (
                cur.get("label"),
                cur.get("valence"),
                cur.get("arousal"),
                cur.get("dominance"),
            )
            scores = cur.get("scores") or {}
            v.confidence = scores.get(v.label) if v.label else None
        elif kind == "window":
            v = self._view(str(d["stream"]))
            sm = d.get("smoothed") or {}
            v.valence_hist.append(sm.get("valence"))
            v.arousal_hist.append(sm.get("arousal"))
            v.label_hist.append(sm.get("label"))


def _colour(label: str | None) -> str:
    return LABEL_COLOURS.get(label or "", "#bdbdbd") if label else "#616161"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def render(model: LiveModel) -> Any:
    """A rich Table of the model (one row per stream)."""
    from rich.table import Table
    from rich.text import Text

    title = f"emotrack {model.prefix}" + (f" ({model.daemon_status})" if model.daemon_status else "")
    t = Table(title=title, caption=f"{model.messages} messages", expand=False)
    for col in ("stream", "status", "emotion", "conf", "valence", "arousal", "dominance", "audio s"):
        t.add_column(
            col, justify="right" if col in ("conf", "valence", "arousal", "dominance", "audio s") else "left"
        )
    t.add_column("valence / arousal history", no_wrap=True)
    t.add_column("labels", no_wrap=True)
    for v in model.streams.values():
        strip = Text()
        for lab in v.label_hist:
            strip.append("█", style=_colour(lab))
        hist = Text(spark(v.valence_hist), style="green")
        hist.append("\n")
        hist.append(spark(v.arousal_hist), style="red")
        t.add_row(
            v.stream,
            v.status,
            Text(v.label or "-", style=f"bold {_colour(v.label)}"),
            "-" if v.confidence is None else f"{100 * v.confidence:.0f}%",
            _num(v.valence),
            _num(v.arousal),
            _num(v.dominance),
            f"{v.audio_time:.1f}",
            hist,
            strip,
        )
    return t


def require_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise LiveViewError("the live view needs rich: pip install 'emotrack[listen]'") from None


async def live(client: Any, model: LiveModel, console: Any = None, *, count: int = 0) -> int:
    """Draw ``model`` while feeding it ``client``'s messages (an aiomqtt client already subscribed)."""
    require_rich()
    from rich.live import Live

    seen = 0
    with Live(render(model), console=console, refresh_per_second=4, transient=False) as view:
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            model.update(m.topic.value, payload)
            view.update(render(model))
            seen += 1
            if count and seen >= count:
                break
    return 0
