"""Conversation-log tools: replay (real daemon on espeak speech, re-smoothing), report and plot.

Logs are real files written by the real conversation-log sink; the PNG is decoded and inspected, the
HTML parsed. The CLI runs as a subprocess where the exit code and one-line errors matter.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.config import load_config
from streamer.convlog import LogReadError, read_conversations
from streamer.messages import SAMPLE_RATE, Scores, SpeechWindow, UtteranceEnded
from streamer.records import EngineRef, Record
from streamer.replay import ReplayError, replay, write_log
from streamer.report import format_text, label_segments, summarise
from streamer.sinks.logfile import LogConfig
from streamer.smoothing import SmoothingConfig
from streamer.tracker import StreamTracker
from tests.daemon_helpers import cli_cmd, cli_env

LABELS = ("neutral", "happy", "sad", "angry")


def _cfg(engine_dir: Path, **smoothing: Any) -> Any:
    flags: dict[str, Any] = {"engine": {"path": str(engine_dir), "intra_op_threads": 1}, "stdout": "off"}
    if smoothing:
        flags["smoothing"] = smoothing
    return load_config(None, environ={}, flags=flags)


@pytest.fixture(scope="module")
def speech_log(tiny_engine_dir: Path, speech_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conversation log written by the real daemon scoring espeak speech (replay of the audio)."""
    import asyncio

    out = tmp_path_factory.mktemp("speech_log")
    results = asyncio.run(replay(speech_wav, _cfg(tiny_engine_dir), out, rescore=True, stream_id="alice"))
    assert len(results) == 1 and results[0].log is not None
    return results[0].log


async def scripted_log(directory: Path, stream: str = "bob") -> Path:
    """A log whose raw scores go happy -> sad inside utterance 0, then angry in utterance 1."""
    smoothed = SmoothingConfig(tau_s=1.5, margin=0.1, min_switch_s=1.0)  # a track that lags the raw scores
    tracker = StreamTracker(stream, EngineRef("scripted", "1.0"), LABELS, True, smoothed)
    recs: list[Record] = []
    plan = [(0, "happy")] * 8 + [(0, "sad")] * 8 + [(1, "angry")] * 8
    for i, (utt, lab) in enumerate(plan):
        start = 0.5 * i + (3.0 if utt else 0.0)
        probs = {k: (0.85 if k == lab else 0.05) for k in LABELS}
        vad = (0.6, 0.2, 0.1) if lab == "happy" else (-0.5, -0.3, -0.2) if lab == "sad" else (-0.6, 0.8, 0.5)
        win = SpeechWindow(
            stream,
            utt,
            i,
            round(start * SAMPLE_RATE),
            round((start + 2) * SAMPLE_RATE),
            np.zeros(0, np.float32),
            1.8e9 + start + 2,
        )
        rec = tracker.on_window(win, Scores(probs, vad))
        assert rec is not None
        recs.append(rec)
        if i in (15, 23):
            first = 0 if utt == 0 else 16
            s0 = round((0.5 * first + (3.0 if utt else 0.0)) * SAMPLE_RATE)
            ev = UtteranceEnded(stream, utt, s0, round((start + 2) * SAMPLE_RATE), 1.8e9 + start + 2, 8)
            recs.append(tracker.on_utterance_end(ev))
    paths = await write_log([(stream, recs)], LogConfig(directory, rotate_seconds=None))
    assert paths[0] is not None
    return paths[0]


def test_replay_of_audio_writes_a_complete_log(speech_log: Path) -> None:
    lines = [json.loads(x) for x in speech_log.read_text().splitlines()]
    assert lines[0]["type"] == "session" and lines[0]["stream"] == "alice"
    assert lines[-1]["type"] == "stream_end"
    kinds = {x["type"] for x in lines}
    assert {"window", "utterance"} <= kinds
    (conv,) = read_conversations([speech_log])
    assert conv.windows and len(conv.utterances) >= 2  # two copies of the sentence, silence between
    assert all(w.raw.scores and set(w.raw.scores) == set(LABELS) for w in conv.windows)


async def test_report_of_scripted_log_finds_the_turning_points(tmp_path: Path) -> None:
    log = await scripted_log(tmp_path)
    (conv,) = read_conversations([log])
    s = summarise(conv)
    assert [(t.before, t.after) for t in s.turning_points] == [("happy", "sad"), ("sad", "angry")]
    happy_sad = s.turning_points[0].time
    assert 6.0 < happy_sad < 9.0  # hysteresis: after the first sad window (ends at 6 s), not much later
    segs = label_segments(conv)
    assert sum(x.end - x.start for x in segs) == pytest.approx(s.speech_s, abs=1e-6)
    assert set(s.time_per_label) == {"happy", "sad", "angry"}
    assert s.mean_raw["valence"] == pytest.approx((8 * 0.6 - 8 * 0.5 - 8 * 0.6) / 24, abs=1e-3)
    text = format_text([s])
    assert "happy -> sad" in text and "sad -> angry" in text


def test_report_cli_json_and_text(speech_log: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        cli_cmd("report", "--json", str(speech_log)),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.splitlines()[0])
    assert d["stream"] == "alice" and d["windows"] > 0
    assert sum(d["time_per_label"].values()) == pytest.approx(d["speech_s"], rel=0.05)
    r = subprocess.run(
        cli_cmd("report", str(tmp_path / "nope.jsonl")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "nope.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_truncated_log_still_reads(speech_log: Path, tmp_path: Path) -> None:
    data = speech_log.read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(data[: len(data) * 2 // 3])  # a crash mid-line, no stream_end
    (conv,) = read_conversations([cut])
    assert conv.end is None and conv.windows and conv.skipped_lines <= 1
    junk = tmp_path / "junk.jsonl"
    junk.write_text("hello\n")
    with pytest.raises(LogReadError, match=r"junk\.jsonl"):
        read_conversations([junk])


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.rows = 0
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "tr":
            self.rows += 1
        if tag in ("script", "link") and (a.get("src") or a.get("href")):
            self.links.append(str(a.get("src") or a.get("href")))


def _png_stats(png: bytes) -> tuple[tuple[int, ...], int, float]:
    from matplotlib import image

    img = image.imread(io.BytesIO(png), format="png")
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = len(np.unique(rgb // 16, axis=0))
    non_white = float(np.mean(np.any(rgb < 240, axis=1)))
    return img.shape, colours, non_white


async def test_plot_png_and_html_of_two_lanes(speech_log: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plotting needs the .[plot] extra")
    scripted = await scripted_log(tmp_path / "logs")
    png, page = tmp_path / "p.png", tmp_path / "p.html"
    r = subprocess.run(
        cli_cmd("plot", str(speech_log), str(scripted), "--out", str(png), "--html", str(page), "--json"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["streams"] == ["alice", "bob"] or set(json.loads(r.stdout)["streams"]) == {
        "alice",
        "bob",
    }
    shape, colours, non_white = _png_stats(png.read_bytes())
    assert shape[1] >= 1000 and shape[0] >= 600  # two lanes stacked
    assert colours >= 8 and non_white > 0.05
    p = _Page()
    p.feed(page.read_text())
    assert not p.links  # self-contained: no external scripts or stylesheets
    (src,) = p.imgs
    assert src.startswith("data:image/png;base64,")
    embedded = base64.b64decode(src.split(",", 1)[1])
    assert embedded[:8] == b"\x89PNG\r\n\x1a\n"
    # summary header + 2 streams, turning-points header + bob's 2, utterances header + bob's 2 + alice's
    assert p.rows >= 1 + 2 + 1 + 2 + 1 + 2 + 2


async def test_resmooth_log_keeps_raw_and_changes_the_track(tmp_path: Path, tiny_engine_dir: Path) -> None:
    log = await scripted_log(tmp_path / "in")
    cfg = _cfg(tiny_engine_dir, tau_s=0.0, min_switch_s=0.0, margin=0.0)
    (res,) = await replay(log, cfg, tmp_path / "out", rescore=False)
    assert res.mode == "resmoothed" and res.windows == 24 and res.utterances == 2 and res.log is not None
    (old,) = read_conversations([log])
    (new,) = read_conversations([res.log])
    assert [w.raw for w in new.windows] == [w.raw for w in old.windows]
    assert [w.smoothed.label for w in new.windows] == [w.raw.label for w in old.windows]  # no smoothing
    assert [w.smoothed.label for w in old.windows] != [w.raw.label for w in old.windows]
    assert summarise(new).turning_points[0].time == pytest.approx(4.0 + 2.0)  # first sad window's end


async def test_rescore_log_from_the_audio_its_header_names(
    speech_log: Path, speech_wav: Path, tiny_engine_dir: Path, tmp_path: Path
) -> None:
    lines = speech_log.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["source"] == str(speech_wav.resolve())  # replayed audio: the new log names it
    (res,) = await replay(speech_log, _cfg(tiny_engine_dir, tau_s=0.5), tmp_path / "y", rescore=True)
    assert res.mode == "rescored" and res.log is not None
    (orig,) = read_conversations([speech_log])
    (new,) = read_conversations([res.log])
    assert [w.raw for w in new.windows] == [w.raw for w in orig.windows]  # same engine, same audio
    assert [w.smoothed for w in new.windows] != [w.smoothed for w in orig.windows]  # other smoothing
    # without the audio, re-scoring is refused in one line; re-smoothing still works
    del head["source"]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(ReplayError, match="names no source audio"):
        await replay(bare, _cfg(tiny_engine_dir), tmp_path / "x", rescore=True)
    head["source"] = str(tmp_path / "gone.wav")
    bare.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    r = subprocess.run(
        cli_cmd("replay", str(bare), "--engine", str(tiny_engine_dir), "--out", str(tmp_path / "z")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "gone.wav" in r.stderr
    r = subprocess.run(
        cli_cmd("replay", str(bare), "--tau", "0", "--json", "--out", str(tmp_path / "z")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == "resmoothed" and d["windows"] == len(orig.windows) and Path(d["log"]).is_file()
    assert json.loads(Path(d["log"]).read_text().splitlines()[0])["source"] == head["source"]


async def test_resmooth_with_and_without_centring(tmp_path: Path) -> None:
    log = await scripted_log(tmp_path / "in")
    (old,) = read_conversations([log])

    def resmoothed(*flags: str) -> Any:
        out = tmp_path / "-".join(["out", *flags])
        r = subprocess.run(
            cli_cmd(
                "replay",
                str(log),
                "--tau",
                "0",
                "--margin",
                "0",
                "--min-switch",
                "0",
                "--json",
                "--out",
                str(out),
                *flags,
            ),
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        (conv,) = read_conversations([Path(json.loads(r.stdout)["log"])])
        return conv

    plain, centred = (
        resmoothed("--no-centring"),
        resmoothed("--centring-warmup", "0", "--centring-strength", "1", "--set", "centring.gate=1"),
    )
    assert [w.raw for w in plain.windows] == [w.raw for w in centred.windows] == [w.raw for w in old.windows]
    assert [w.smoothed.label for w in plain.windows] == [w.raw.label for w in old.windows]
    second = centred.windows[1].smoothed.scores  # the same scores as the first window: centred away
    assert second is not None and second == pytest.approx(dict.fromkeys(LABELS, 0.25))
    first = plain.utterances[0].summary.scores
    assert first is not None and first["happy"] == pytest.approx(first["sad"])  # the mean of the raw windows
    assert centred.utterances[1].summary.scores != plain.utterances[1].summary.scores
    r = subprocess.run(
        cli_cmd("replay", str(log), "--centring-strength", "2", "--out", str(tmp_path / "bad")),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "centring.strength" in r.stderr


def test_replay_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        cli_cmd("replay", str(tmp_path / "missing.wav"), "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "missing.wav" in r.stderr


def test_plot_without_matplotlib_says_how_to_install(
    speech_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from streamer.plot import PlotError, render_png

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    with pytest.raises(PlotError, match=r"emotrack\[plot\]"):
        render_png(read_conversations([speech_log]))


async def test_labels_only_engine_plots_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plotting needs the .[plot] extra")
    from streamer.plot import render_html, render_png

    tracker = StreamTracker("cat", EngineRef("labels-only", "1"), LABELS, False, SmoothingConfig())
    recs: list[Record] = []
    for i in range(6):
        lab = LABELS[i // 3]
        win = SpeechWindow("cat", 0, i, i * 8000, i * 8000 + 32000, np.zeros(0, np.float32), 1.8e9 + i)
        rec = tracker.on_window(win, Scores({k: (0.7 if k == lab else 0.1) for k in LABELS}, None))
        assert rec is not None
        recs.append(rec)
    (path,) = await write_log([("cat", recs)], LogConfig(tmp_path, rotate_seconds=None))
    assert path is not None
    convs = read_conversations([path])
    assert not convs[0].has_vad
    s = summarise(convs[0])
    assert s.mean_raw["valence"] is None and set(s.time_per_label) <= set(LABELS)
    png = render_png(convs)
    _, colours, _ = _png_stats(png)
    assert colours >= 3
    assert "labels-only 1" in render_html(convs, png)


async def test_rotated_parts_merge_into_one_conversation(tmp_path: Path) -> None:
    src = await scripted_log(tmp_path / "src")
    (conv,) = read_conversations([src])
    records: list[Record] = [*conv.windows, *conv.utterances]
    records.sort(key=lambda r: r.seq)
    await write_log([("bob", records)], LogConfig(tmp_path / "rot", rotate_bytes=2048))
    parts = sorted((tmp_path / "rot").rglob("*.jsonl"))
    assert len(parts) >= 3  # the real log sink rotated by size
    (merged,) = read_conversations([tmp_path / "rot"])
    assert merged.windows == conv.windows and merged.utterances == conv.utterances
    assert len(merged.paths) == len(parts) and merged.end is not None
    assert summarise(merged).turning_points == summarise(conv).turning_points
