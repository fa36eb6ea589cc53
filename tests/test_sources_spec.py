"""Source spec parsing and opening (files on disk, a real TCP listener, stdin)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.messages import AudioChunk, StreamEnded
from streamer.sources import SourceError, SourceSpec, open_source, parse_spec
from streamer.sources.file import FileSource
from streamer.sources.mic import MicSource
from streamer.sources.pcm import PcmServerSource, StdinSource


def test_file_specs() -> None:
    s = parse_spec("file:/data/calls/call 1.wav?split=1&realtime=yes&id=call")
    assert s == SourceSpec(
        kind="file",
        target="/data/calls/call 1.wav",
        stream_id="call",
        realtime=True,
        split=True,
        text="file:/data/calls/call 1.wav?split=1&realtime=yes&id=call",
    )
    bare = parse_spec("recordings/Meeting Room #2.flac")
    assert bare.kind == "file" and bare.target == "recordings/Meeting Room #2.flac"
    assert bare.stream_id == "Meeting_Room_2"
    assert parse_spec("file:x.wav?loop=on&chunk_ms=20").loop is True
    assert parse_spec("file:x.wav?chunk_ms=20").chunk_ms == 20.0
    # a '?' that is part of a path, not options
    assert parse_spec("what?.wav").target == "what?.wav"
    assert parse_spec("dir?x=1/file.wav").target == "dir?x=1/file.wav"


def test_mic_stdin_and_socket_specs() -> None:
    assert parse_spec("mic:") == SourceSpec(kind="mic", target="", stream_id="mic", text="mic:")
    assert parse_spec("mic").stream_id == "mic"
    assert parse_spec("mic:").buffer_s == 5.0 and parse_spec("mic:?buffer_s=60").buffer_s == 60.0
    m = parse_spec("mic:USB Audio?rate=48000&channels=2&split=1&reopen=1")
    assert (m.target, m.stream_id, m.rate, m.channels, m.split, m.reopen) == (
        "USB Audio",
        "mic-USB_Audio",
        48000,
        2,
        True,
        True,
    )
    assert parse_spec("mic:2?id=desk").target == "2"
    s = parse_spec("stdin?format=s24le&rate=44100&channels=2")
    assert (s.kind, s.sample_format, s.rate, s.channels, s.stream_id) == ("stdin", "s24le", 44100, 2, "stdin")
    t = parse_spec("tcp://0.0.0.0:9000?format=f32le&id=gw")
    assert (t.kind, t.target, t.port, t.stream_id, t.sample_format) == ("tcp", "0.0.0.0", 9000, "gw", "f32le")
    assert parse_spec("tcp://:7000").target == "127.0.0.1"
    v6 = parse_spec("tcp://[::1]:7000")
    assert (v6.target, v6.port, v6.stream_id) == ("::1", 7000, "tcp-7000")
    u = parse_spec("unix:/run/emotrack/pcm.sock?rate=8000")
    assert (u.kind, u.target, u.stream_id, u.rate) == ("unix", "/run/emotrack/pcm.sock", "pcm", 8000)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty source spec"),
        ("file:x.wav?colour=red", "unknown option 'colour'"),
        ("file:x.wav?split=maybe", "not a boolean"),
        ("file:x.wav?split=1&split=0", "given twice"),
        ("stdin?rate=abc", "not an integer"),
        ("stdin?rate=5", "outside 1000..768000"),
        ("stdin?format=u8", "unknown format 'u8'"),
        ("stdin?channels=0", "outside 1..64"),
        ("tcp://localhost", "expected tcp://HOST:PORT"),
        ("tcp://localhost:99999", "outside 0..65535"),
        ("unix:", "expected unix:PATH"),
        ("http://example.com/a.wav", "unsupported scheme"),
        ("file:x.wav?id=a#b", "invalid id"),
        ("file:x.wav?id=", "invalid id"),
        ("file:x.wav?format=s16le", "only to raw PCM"),
        ("file:x.wav?rate=8000", "come from the file"),
        ("mic:?realtime=1", "only to files"),
        ("stdin?reopen=1", "only to mic"),
        ("file:a.wav?buffer_s=10", "only to mic"),
        ("mic:?buffer_s=0", "buffer_s"),
    ],
)
def test_bad_specs_name_the_spec(spec: str, match: str) -> None:
    with pytest.raises(SourceError, match=match) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)
    if spec:
        assert repr(spec) in str(info.value)


async def test_open_source_builds_each_kind(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    sf.write(path, np.zeros((8000, 2), np.float32), 8000)
    f = open_source(f"file:{path}?split=1&id=call", chunk_ms=20)
    assert isinstance(f, FileSource) and f.stream_ids == ["call.ch0", "call.ch1"]
    events = [e async for e in f]
    assert sum(isinstance(e, AudioChunk) for e in events) == 2 * 50
    assert [e for e in events if isinstance(e, StreamEnded)] == [
        StreamEnded("call.ch0", 16000, "eof"),
        StreamEnded("call.ch1", 16000, "eof"),
    ]

    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "nope.wav"))

    t = open_source("tcp://127.0.0.1:0?format=s32le&rate=8000&id=gw")
    assert isinstance(t, PcmServerSource)
    await t.start()
    _, w = await asyncio.open_connection("127.0.0.1", t.port)
    w.write(np.zeros(800, "<i4").tobytes())
    w.close()
    got = []
    async for ev in t:
        got.append(ev)
        if isinstance(ev, StreamEnded):
            break
    assert got[-1] == StreamEnded(f"gw-{t.session}-1", 1600, "disconnected")  # the daemon's session
    await t.aclose()

    assert isinstance(open_source("stdin?format=f32le"), StdinSource)
    assert isinstance(open_source(parse_spec("mic:3")), MicSource)  # opens lazily: no device needed yet
    u = open_source(f"unix:{tmp_path / 's.sock'}")
    assert isinstance(u, PcmServerSource) and u.url == f"unix:{tmp_path / 's.sock'}"
