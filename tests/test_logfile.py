"""Conversation logs on a real filesystem: headers, lines, rotation, permissions, crash safety."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streamer.records import EmotionValues
from streamer.sinks.base import safe_name
from streamer.sinks.logfile import ConversationLog, LogConfig, LogConfigError, LogError
from tests import sample_records as rec
from tests.fixtures_mqtt import REPO_ROOT

NAME = re.compile(r"^\d{8}T\d{6}Z_[A-Za-z0-9._\-]+(_part\d+)?\.jsonl$")


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.jsonl"))


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask: the log must still produce 0700/0600."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_session_file_header_records_and_end(tmp_path: Path, open_umask: None) -> None:
    logdir = tmp_path / "logs" / "nested"
    sink = ConversationLog(LogConfig(logdir), wall_clock=FakeClock(1795317300.25))
    await sink.start()
    windows = [rec.window("mic0", i) for i in range(5)]
    for w in windows:
        await sink.emit(w)
    await sink.emit(rec.state("mic0", 5))  # not logged
    utt = rec.utterance("mic0", 5)
    await sink.emit(utt)
    await sink.stream_ended("mic0")
    await sink.close()

    files = log_files(logdir)
    assert [f.name for f in files] == ["20261122T031500Z_mic0.jsonl"]
    assert files[0].parent == logdir / "mic0"
    lines = read_lines(files[0])
    header, body, end = lines[0], lines[1:-1], lines[-1]
    assert header["type"] == "session" and header["stream"] == "mic0" and header["part"] == 1
    assert header["started"] == "2026-11-22T03:15:00.250Z"
    assert header["engine"] == {"name": "emotrack-test", "version": "1.0.0"}
    assert isinstance(header["session"], str) and len(header["session"]) == 32
    assert body == [w.to_dict() for w in windows] + [utt.to_dict()]
    assert end["type"] == "stream_end" and end["records"] == 6 and end["reason"] == "ended"
    assert end["session"] == header["session"]
    assert sink.written == 6 and sink.dropped == 0 and sink.errors == 0

    for d in (tmp_path / "logs", logdir, logdir / "mic0"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


async def test_streams_get_separate_files_and_new_session_after_end(tmp_path: Path) -> None:
    wall = FakeClock(1795317300.0)
    sink = ConversationLog(LogConfig(tmp_path), wall_clock=wall)
    await sink.start()
    for i in range(4):
        await sink.emit(rec.window("a", i))
        await sink.emit(rec.window("b/1", i))
    await sink.stream_ended("a")
    await sink.emit(rec.window("a", 4))  # same second: a second session must not collide
    await sink.close()
    a_files = sorted(log_files(tmp_path / "a"), key=lambda f: (len(f.name), f.name))
    assert len(a_files) == 2 and all(NAME.match(f.name) for f in a_files)
    assert a_files[1].name == a_files[0].name.replace("_a.jsonl", "_a-2.jsonl")
    first, second = (read_lines(f) for f in a_files)
    assert [x["seq"] for x in first[1:-1]] == [0, 1, 2, 3]
    assert first[-1]["reason"] == "ended"
    assert [x["seq"] for x in second[1:-1]] == [4]
    assert second[-1]["reason"] == "shutdown"  # close() ends open sessions
    assert first[0]["session"] != second[0]["session"]
    (b_file,) = log_files(tmp_path / "b_1")
    b = read_lines(b_file)
    assert b[0]["stream"] == "b/1" and [x["seq"] for x in b[1:-1]] == [0, 1, 2, 3]


async def test_rotation_by_size(tmp_path: Path) -> None:
    sink = ConversationLog(LogConfig(tmp_path, rotate_bytes=4096, rotate_seconds=None))
    await sink.start()
    for i in range(40):
        await sink.emit(rec.window("s", i))
    await sink.close()
    files = log_files(tmp_path / "s")
    assert len(files) > 3
    base = files[0].name.removesuffix(".jsonl")
    assert [f.name for f in files[1:]] == sorted(f"{base}_part{n}.jsonl" for n in range(2, len(files) + 1))
    seqs: list[object] = []
    sessions = set()
    for n, f in enumerate(sorted(files, key=lambda f: read_lines(f)[0]["part"]), start=1):
        lines = read_lines(f)
        assert lines[0]["type"] == "session" and lines[0]["part"] == n
        sessions.add(lines[0]["session"])
        assert f.stat().st_size <= 4096
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        seqs += [x["seq"] for x in lines[1:] if x["type"] == "window"]
        assert (lines[-1]["type"] == "stream_end") == (n == len(files))
    assert seqs == list(range(40)) and len(sessions) == 1


async def test_rotation_by_time(tmp_path: Path) -> None:
    clock = FakeClock(100.0)
    sink = ConversationLog(LogConfig(tmp_path, rotate_bytes=None, rotate_seconds=60.0), clock=clock)
    await sink.start()
    for i in range(3):
        await sink.emit(rec.window("s", i))
    await sink.flush()
    clock.t = 159.0
    await sink.emit(rec.window("s", 3))
    await sink.flush()
    assert len(log_files(tmp_path)) == 1
    clock.t = 161.0
    await sink.emit(rec.window("s", 4))
    await sink.emit(rec.window("s", 5))
    await sink.close()
    first, second = log_files(tmp_path / "s")
    assert second.name.endswith("_part2.jsonl")
    assert [x["seq"] for x in read_lines(first)[1:]] == [0, 1, 2, 3]
    part2 = read_lines(second)
    assert part2[0]["part"] == 2 and part2[0]["previous"] == first.name
    assert [x.get("seq") for x in part2[1:]] == [4, 5, None]


async def test_queue_overflow_drops_oldest_and_counts(tmp_path: Path) -> None:
    sink = ConversationLog(LogConfig(tmp_path, queue_size=5))
    for i in range(12):  # queued before the writer thread runs
        await sink.emit(rec.window("s", i))
    await sink.start()
    await sink.close()
    (f,) = log_files(tmp_path)
    assert [x["seq"] for x in read_lines(f)[1:-1]] == [7, 8, 9, 10, 11]
    assert sink.dropped == 7 and sink.written == 5


async def test_fsync_and_non_finite_values(tmp_path: Path) -> None:
    sink = ConversationLog(LogConfig(tmp_path, fsync=True))
    await sink.start()
    w = rec.window("s", 0)
    bad = replace(w, raw=EmotionValues("happy", {"happy": float("nan")}, float("inf"), 0.0, None))
    await sink.emit(bad)
    await sink.close()
    (f,) = log_files(tmp_path)
    line = read_lines(f)[1]
    assert line["raw"] == {"label": "happy", "scores": {"happy": None}, "valence": None, "arousal": 0.0,
                           "dominance": None}  # fmt: skip


async def test_unusable_directory_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LogError) as ei:
        await ConversationLog(LogConfig(blocker / "logs")).start()
    assert str(blocker / "logs") in str(ei.value) and "\n" not in str(ei.value)


async def test_stream_ids_cannot_escape_the_directory(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    sink = ConversationLog(LogConfig(logdir))
    await sink.start()
    for stream in ("../../escape", "..", "a/b\\c", "x" * 300):
        await sink.emit(rec.window(stream, 0))
    await sink.close()
    files = log_files(tmp_path)
    assert len(files) == 4
    assert all(f.parent.parent == logdir and len(f.name) < 255 for f in files)
    assert {read_lines(f)[0]["stream"] for f in files} == {"../../escape", "..", "a/b\\c", "x" * 300}
    assert safe_name("mic/left #1+x") == "mic_left__1_x" and safe_name("..") == "__"
    assert safe_name("x" * 300) != safe_name("x" * 299) and len(safe_name("x" * 300)) == 100


def test_config_validation() -> None:
    with pytest.raises(LogConfigError, match=r"logs\.rotate_bytes"):
        LogConfig(Path("x"), rotate_bytes=10)
    with pytest.raises(LogConfigError, match=r"logs\.rotate_seconds"):
        LogConfig(Path("x"), rotate_seconds=0)


CRASH_CHILD = """
import asyncio, sys
from pathlib import Path
from streamer.sinks.base import safe_name
from streamer.sinks.logfile import ConversationLog, LogConfig
from tests.sample_records import window

async def main() -> None:
    sink = ConversationLog(LogConfig(Path(sys.argv[1]), rotate_bytes=200_000))
    await sink.start()
    i = 0
    while True:
        for _ in range(50):
            await sink.emit(window("s", i))
            i += 1
        if i == 500:
            await sink.flush()
            print("ready", flush=True)
        await asyncio.sleep(0)

asyncio.run(main())
"""


def test_crash_mid_write_leaves_complete_lines_parseable(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        child.send_signal(signal.SIGKILL)  # while it is writing flat out
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    files = sorted(log_files(tmp_path), key=lambda f: (len(f.name), f.name))
    seqs: list[int] = []
    for f in files:
        raw = f.read_bytes()
        complete, _, tail = raw.rpartition(b"\n")
        lines = [json.loads(x) for x in complete.split(b"\n")] if complete else []
        assert lines and lines[0]["type"] == "session"
        assert len(tail) < 2000  # at most the one line being written
        seqs += [int(x["seq"]) for x in lines[1:]]
    assert len(seqs) >= 500 and seqs == list(range(len(seqs)))
