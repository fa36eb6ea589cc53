"""Stdout sink: exact text lines, JSON lines, and a closed pipe handled quietly (real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from streamer.records import EmotionValues, Record
from streamer.sinks.stdout import StdoutConfig, StdoutSink, format_record
from tests import sample_records as rec
from tests.fixtures_mqtt import REPO_ROOT


def test_window_and_utterance_lines() -> None:
    assert format_record(rec.window("mic0", 3)) == (
        "[mic0] 1.50-3.50s  angry 0.40     V+0.20 A+0.20 D-0.26  (raw neutral 0.40)"
    )
    assert format_record(rec.utterance("mic0", 4, utterance=2)) == (
        "[mic0] utterance 2: 0.25-3.25s (3.0s, 3 windows)  angry 0.40     V+0.20 A+0.20 D-0.26"
    )
    assert format_record(rec.state("mic0", 5)) is None
    assert format_record(rec.state("mic0", 5), StdoutConfig(show_state=True)) == (
        "[mic0] speaking at 4.50s  sad 0.40       V-0.20 A+0.25 D-0.25"
    )
    assert format_record(rec.window("m", 3), StdoutConfig(show_raw=False)) == (
        "[m] 1.50-3.50s  angry 0.40     V+0.20 A+0.20 D-0.26"
    )


def test_engine_without_a_head() -> None:
    no_vad = EmotionValues("sad", {"sad": 0.7, "happy": 0.3}, None, None, None)
    no_cat = EmotionValues(None, None, 0.5, -0.25, None)
    w = rec.window("x", 0)
    assert (
        format_record(replace(w, smoothed=no_vad, raw=no_vad)) == "[x] 0.00-2.00s  sad 0.70  (raw sad 0.70)"
    )
    line = format_record(replace(w, smoothed=no_cat, raw=no_cat))
    assert line == "[x] 0.00-2.00s  -              V+0.50 A-0.25 D  -    (raw -)"


async def test_sink_writes_text_lines_to_a_file(tmp_path: Path) -> None:
    out_path = tmp_path / "out.txt"
    with out_path.open("w") as out:
        sink = StdoutSink(out=out)
        await sink.start()
        await sink.emit(rec.window("a", 0))
        await sink.emit(rec.state("a", 1))
        await sink.emit(rec.utterance("a", 1))
        await sink.stream_ended("a")
        await sink.close()
    lines = out_path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[a] 0.00-2.00s  ")
    assert lines[1].startswith("[a] utterance 0: ")
    assert lines[2] == "[a] stream ended"


async def test_sink_json_mode_emits_every_record(tmp_path: Path) -> None:
    out_path = tmp_path / "out.jsonl"
    records: list[Record] = [rec.window("a", 0), rec.state("a", 1), rec.utterance("a", 2)]
    with out_path.open("w") as out:
        sink = StdoutSink(StdoutConfig(json=True), out=out)
        await sink.start()
        for r in records:
            await sink.emit(r)
        await sink.stream_ended("a")
        await sink.close()
    lines = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert lines == [r.to_dict() for r in records] + [{"type": "stream_end", "stream": "a"}]


PIPE_CHILD = """
import asyncio
from streamer.sinks.stdout import StdoutSink
from tests.sample_records import window

async def main() -> None:
    sink = StdoutSink()
    await sink.start()
    for i in range(20000):
        await sink.emit(window("p", i))
        if i % 100 == 0:
            await sink.flush()
    await sink.close()
    print("not seen: the pipe is closed")

asyncio.run(main())
"""


def test_closed_pipe_stops_quietly() -> None:
    """`emotrack listen | head -n 2`: no traceback, the child exits on its own."""
    child = subprocess.Popen(
        [sys.executable, "-c", PIPE_CHILD],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    first = child.stdout.readline()
    second = child.stdout.readline()
    child.stdout.close()  # the reader goes away
    err = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=120) == 0, err
    assert first.startswith(b"[p] 0.00-2.00s") and second.startswith(b"[p] 0.50-2.50s")
    assert err == ""
