"""Emotion trajectory plots of conversation logs: a PNG, and one self-contained HTML page.

One lane per conversation (several logs or streams: several lanes on one audio-time axis): raw V/A/D
as dots at each window's end, smoothed V/A/D as lines broken between utterances, utterance
boundaries as dashed lines, and under it a ribbon coloured by the smoothed label. matplotlib is
imported lazily with the Agg backend (no display needed); it is an optional extra.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer.convlog import Conversation
from streamer.errors import EmotrackError
from streamer.report import StreamSummary, label_segments, summarise


class PlotError(EmotrackError):
    """matplotlib is missing, or the output cannot be written."""


# Fixed colours for the usual labels so plots compare across engines; others cycle a palette.
LABEL_COLOURS = {
    "neutral": "#9e9e9e",
    "calm": "#4db6ac",
    "happy": "#fbc02d",
    "sad": "#1e88e5",
    "angry": "#e53935",
    "fear": "#8e24aa",
    "fearful": "#8e24aa",
    "disgust": "#43a047",
    "surprise": "#fb8c00",
    "surprised": "#fb8c00",
}
_PALETTE = ["#6d4c41", "#00acc1", "#c0ca33", "#d81b60", "#5e35b1", "#3949ab", "#00897b", "#f4511e"]
MAX_TABLE_ROWS = 500  # utterances listed per stream in the HTML page
VAD_COLOURS = {"valence": "#2e7d32", "arousal": "#c62828", "dominance": "#1565c0"}


def label_colour(label: str | None, others: dict[str, str]) -> str:
    if label is None:
        return "#ffffff"
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    if label not in others:
        others[label] = _PALETTE[len(others) % len(_PALETTE)]
    return others[label]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'emotrack[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _title(conv: Conversation) -> str:
    started = conv.header.get("started")
    return f"{conv.stream}" + (f"  ({started})" if started else "")


def _lane(ax: Any, rib: Any, conv: Conversation, others: dict[str, str]) -> None:
    ws = conv.windows
    t = [w.end for w in ws]
    for dim, colour in VAD_COLOURS.items():
        raw = [getattr(w.raw, dim) for w in ws]
        if any(v is not None for v in raw):
            ax.scatter(t, [math.nan if v is None else v for v in raw], s=9, color=colour, alpha=0.35)
        xs: list[float] = []
        ys: list[float] = []
        prev: int | None = None
        for w in ws:
            if prev is not None and w.utterance != prev:  # no line across a pause
                xs.append(math.nan)
                ys.append(math.nan)
            v = getattr(w.smoothed, dim)
            xs.append(w.end)
            ys.append(math.nan if v is None else v)
            prev = w.utterance
        if any(not math.isnan(y) for y in ys):
            ax.plot(xs, ys, color=colour, linewidth=1.8, label=f"{dim} (smoothed)")
    for u in conv.utterances:
        for x in (u.start, u.end):
            ax.axvline(x, color="#555555", linestyle="--", linewidth=0.6, alpha=0.6)
            rib.axvline(x, color="#555555", linestyle="--", linewidth=0.6, alpha=0.6)
    ax.axhline(0.0, color="#000000", linewidth=0.4, alpha=0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("V / A / D")
    if not conv.has_vad:
        ax.text(0.5, 0.5, "engine without V/A/D", transform=ax.transAxes, ha="center", alpha=0.6)
    ax.set_title(_title(conv), loc="left", fontsize=10)
    ax.grid(alpha=0.25)
    seen: dict[str, str] = {}
    for seg in label_segments(conv):
        colour = label_colour(seg.label, others)
        rib.broken_barh([(seg.start, seg.end - seg.start)], (0, 1), facecolors=colour)
        if seg.label is not None:
            seen[seg.label] = colour
    rib.set_yticks([])
    rib.set_ylim(0, 1)
    rib.set_ylabel("label", rotation=0, ha="right", va="center")
    if seen:
        import matplotlib.patches as mpatches

        handles = [mpatches.Patch(color=c, label=lab) for lab, c in seen.items()]
        rib.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.6), fontsize=8, frameon=False)


def render_png(conversations: Sequence[Conversation], *, dpi: int = 100) -> bytes:
    """The lanes as PNG bytes."""
    if not conversations:
        raise PlotError("nothing to plot: the logs hold no conversation")
    plt = _pyplot()
    n = len(conversations)
    fig, axes = plt.subplots(
        2 * n,
        1,
        figsize=(12, 3.2 * n + 0.6),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [4, 0.6] * n},
    )
    others: dict[str, str] = {}
    try:
        for i, conv in enumerate(conversations):
            _lane(axes[2 * i][0], axes[2 * i + 1][0], conv, others)
        first_vad = next((i for i, c in enumerate(conversations) if c.has_vad), None)
        if first_vad is not None:
            axes[2 * first_vad][0].legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8, frameon=False)
        axes[-1][0].set_xlabel("audio time (s)")
        end = max((c.duration for c in conversations), default=1.0)
        axes[-1][0].set_xlim(0.0, max(end, 1.0) * 1.01)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    finally:
        plt.close(fig)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:+.3f}"


def render_html(conversations: Sequence[Conversation], png: bytes) -> str:
    """One self-contained page: the PNG inline (base64) and summary and turning-point tables."""
    summaries: list[StreamSummary] = [summarise(c) for c in conversations]
    img = base64.b64encode(png).decode("ascii")
    rows = [
        [
            s.stream,
            s.session or "",
            s.engine or "",
            f"{s.speech_s:.1f}",
            s.utterances,
            s.windows,
            s.dominant or "",
            ", ".join(f"{k} {v:.1f}s" for k, v in s.time_per_label.items()),
            _fmt(s.mean_raw["valence"]),
            _fmt(s.mean_raw["arousal"]),
            _fmt(s.mean_raw["dominance"]),
            len(s.turning_points),
        ]
        for s in summaries
    ]
    summary = _table(
        [
            "stream",
            "session",
            "engine",
            "speech s",
            "utterances",
            "windows",
            "dominant",
            "time per emotion",
            "mean valence",
            "mean arousal",
            "mean dominance",
            "turning points",
        ],
        rows,
    )
    turns = _table(
        ["stream", "time s", "from", "to"],
        [[s.stream, f"{t.time:.2f}", t.before, t.after] for s in summaries for t in s.turning_points],
    )
    utts = _table(
        ["stream", "utterance", "start s", "end s", "windows", "label", "valence", "arousal", "dominance"],
        [
            [
                c.stream,
                u.utterance,
                f"{u.start:.2f}",
                f"{u.end:.2f}",
                u.windows,
                u.summary.label,
                _fmt(u.summary.valence),
                _fmt(u.summary.arousal),
                _fmt(u.summary.dominance),
            ]
            for c in conversations
            for u in c.utterances[:MAX_TABLE_ROWS]
        ],
    )
    title = "emotrack: " + ", ".join(html.escape(c.stream) for c in conversations)
    style = (
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f2f2f2}"
        "img{max-width:100%}"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n"
        f"<h1>{title}</h1>\n"
        f'<img alt="emotion trajectory" src="data:image/png;base64,{img}">\n'
        f"<h2>Summary</h2>\n{summary}\n<h2>Turning points</h2>\n{turns}\n"
        f"<h2>Utterances</h2>\n{utts}\n"
        "</body></html>\n"
    )


def write_outputs(
    conversations: Sequence[Conversation], png_path: Path | None, html_path: Path | None
) -> list[Path]:
    """Render once, write the requested files; PlotError naming an unwritable path."""
    png = render_png(conversations)
    written: list[Path] = []
    for path, data in (
        (png_path, png),
        (html_path, None if html_path is None else render_html(conversations, png).encode()),
    ):
        if path is None or data is None:
            continue
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise PlotError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written
