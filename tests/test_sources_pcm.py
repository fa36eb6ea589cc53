"""Raw PCM over real TCP and Unix sockets (several clients, garbage, mid-frame hang-ups) and stdin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.audio import float_to_bytes
from streamer.messages import AudioChunk, SourceEvent, StreamEnded
from streamer.sources.base import SourceError
from streamer.sources.pcm import PcmFormat, PcmServerSource, StdinSource

REPO = Path(__file__).resolve().parents[1]


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


async def consume(src: PcmServerSource, events: list[SourceEvent], n_ends: int) -> None:
    ends = 0
    async for ev in src:
        events.append(ev)
        if isinstance(ev, StreamEnded):
            ends += 1
            if ends == n_ends:
                return


async def wait_for(cond: object, timeout: float = 10.0) -> None:
    assert callable(cond)
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def send(writer: asyncio.StreamWriter, data: bytes, piece: int) -> None:
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
        await writer.drain()


def by_stream(events: list[SourceEvent]) -> tuple[dict[str, np.ndarray], dict[str, StreamEnded]]:
    chunks: dict[str, list[AudioChunk]] = {}
    ends: dict[str, StreamEnded] = {}
    for ev in events:
        if isinstance(ev, AudioChunk):
            assert ev.stream_id not in ends
            lst = chunks.setdefault(ev.stream_id, [])
            assert ev.start_sample == (lst[-1].end_sample if lst else 0)
            assert np.isfinite(ev.samples).all() and np.abs(ev.samples).max(initial=0) <= 1.0
            lst.append(ev)
        else:
            ends[ev.stream_id] = ev
    return {k: np.concatenate([c.samples for c in v]) for k, v in chunks.items()}, ends


async def run_three_clients(src: PcmServerSource, connect: object) -> None:
    """Good client, garbage client, and one that hangs up mid-frame, all on one f32le server."""
    assert callable(connect)
    await src.start()
    events: list[SourceEvent] = []
    consumer = asyncio.create_task(consume(src, events, n_ends=3))

    _good_r, good_w = await connect()
    await wait_for(lambda: len(src.stream_ids) == 1)
    _bad_r, bad_w = await connect()
    await wait_for(lambda: len(src.stream_ids) == 2)
    _cut_r, cut_w = await connect()
    await wait_for(lambda: len(src.stream_ids) == 3)
    assert src.stream_ids == ["pcm", "pcm-2", "pcm-3"]

    rng = np.random.default_rng(0)
    garbage = np.array([np.nan, np.inf, -np.inf, 1e30, -5.0, 0.1] * 2000, dtype="<f4").tobytes()
    garbage += rng.integers(0, 256, size=40_000, dtype=np.uint8).tobytes()
    await send(bad_w, garbage, 997)
    bad_w.close()
    # mid-frame hang-up: 1000 whole f32 frames at 16 kHz plus 3 stray bytes
    await send(cut_w, float_to_bytes(tone(500, 16000, 1000 / 16000), "f32le") + b"\x00\x00\x80", 333)
    cut_w.close()
    # the good client keeps streaming after the others misbehave
    await send(good_w, float_to_bytes(tone(440, 16000, 1.0), "f32le"), 1234)
    good_w.close()
    await asyncio.wait_for(consumer, 20)

    audio, ends = by_stream(events)
    assert set(ends) == {"pcm", "pcm-2", "pcm-3"}
    assert all(e.reason == "disconnected" for e in ends.values())
    assert ends["pcm"].total_samples == 16000
    np.testing.assert_allclose(audio["pcm"], tone(440, 16000, 1.0), atol=1e-6)
    assert ends["pcm-3"].total_samples == 1000
    assert ends["pcm-2"].total_samples == len(garbage) // 4
    stats = src.stats
    assert stats["partial_frames_dropped"] == 1
    assert stats["samples_repaired"] >= 5 * 2000
    assert stats["connections"] == 3 and stats["active_clients"] == 0
    await src.aclose()


async def test_tcp_server_three_clients() -> None:
    src = PcmServerSource("pcm", PcmFormat("f32le", 16000, 1), host="127.0.0.1", port=0, chunk_ms=20)
    await src.start()
    assert src.url.startswith("tcp://127.0.0.1:") and src.port > 0
    await run_three_clients(src, lambda: asyncio.open_connection("127.0.0.1", src.port))


async def test_unix_socket_three_clients(tmp_path: Path) -> None:
    sock = tmp_path / "pcm.sock"
    src = PcmServerSource("pcm", PcmFormat("f32le", 16000, 1), unix_path=sock, chunk_ms=20)
    await run_three_clients(src, lambda: asyncio.open_unix_connection(str(sock)))
    assert not sock.exists()


async def test_tcp_resamples_and_splits_channels() -> None:
    src = PcmServerSource("mix", PcmFormat("s24le", 48000, 2), split_channels=True)
    await src.start()
    events: list[SourceEvent] = []
    consumer = asyncio.create_task(consume(src, events, n_ends=2))
    _, w = await asyncio.open_connection("127.0.0.1", src.port)
    stereo = np.stack([tone(300, 48000, 1.0), tone(2000, 48000, 1.0, 0.25)], axis=1)
    await send(w, float_to_bytes(stereo, "s24le"), 4099)
    w.close()
    await asyncio.wait_for(consumer, 20)
    audio, ends = by_stream(events)
    assert set(ends) == {"mix.ch0", "mix.ch1"}
    for sid, hz, amp in (("mix.ch0", 300, 0.5), ("mix.ch1", 2000, 0.25)):
        x = audio[sid]
        assert abs(len(x) - 16000) <= 2 and ends[sid].total_samples == len(x)
        spec = np.abs(np.fft.rfft(x[2000:14000]))
        assert abs(np.argmax(spec) * 16000 / 12000 - hz) < 3
        assert np.abs(x[2000:14000]).max() == pytest.approx(amp, abs=0.02)
    await src.aclose()


async def test_slow_consumer_drops_oldest_and_stays_bounded() -> None:
    src = PcmServerSource("live", PcmFormat("s16le", 16000, 1), max_queue_chunks=4, chunk_ms=100)
    await src.start()
    _, w = await asyncio.open_connection("127.0.0.1", src.port)
    await send(w, float_to_bytes(tone(440, 16000, 3.0), "s16le"), 8192)  # 30 chunks, nobody reading
    w.close()
    await wait_for(lambda: src.stats["connections"] == 1 and src.stats["active_clients"] == 0)
    assert src.stats["chunks_dropped"] == 26
    assert src.stats["samples_dropped"] == 26 * 1600
    events: list[SourceEvent] = []
    await asyncio.wait_for(consume(src, events, n_ends=1), 10)
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    assert len(chunks) == 4
    assert [c.start_sample for c in chunks] == [26 * 1600 + i * 1600 for i in range(4)]  # the newest kept
    assert events[-1] == StreamEnded("live", 48000, "disconnected")
    await src.aclose()


async def test_aclose_ends_live_clients_and_the_iterator() -> None:
    src = PcmServerSource("c", PcmFormat())
    events: list[SourceEvent] = []

    async def run() -> None:
        async for ev in src:
            events.append(ev)

    consumer = asyncio.create_task(run())
    await wait_for(lambda: src.port > 0)
    _, w = await asyncio.open_connection("127.0.0.1", src.port)
    await send(w, float_to_bytes(tone(440, 16000, 0.5), "s16le"), 4000)
    await wait_for(lambda: any(isinstance(e, AudioChunk) for e in events))
    await src.aclose()
    await asyncio.wait_for(consumer, 10)
    assert events[-1] == StreamEnded("c", 8000, "closed")
    w.close()


async def test_listen_errors_are_source_errors(tmp_path: Path) -> None:
    first = PcmServerSource("a", PcmFormat())
    await first.start()
    second = PcmServerSource("b", PcmFormat(), port=first.port)
    with pytest.raises(SourceError, match=f"cannot listen on tcp://127.0.0.1:{first.port}"):
        await second.start()
    await first.aclose()
    not_sock = tmp_path / "file"
    not_sock.write_text("x")
    with pytest.raises(SourceError, match="not a socket"):
        await PcmServerSource("u", unix_path=not_sock).start()
    with pytest.raises(SourceError, match="unknown sample format"):
        PcmServerSource("u", PcmFormat("u8"))
    with pytest.raises(SourceError, match="sample rate"):
        StdinSource("s", PcmFormat("s16le", 10, 1))


async def test_stale_unix_socket_is_replaced(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays behind, nobody listens
    src = PcmServerSource("u", unix_path=path)
    await src.start()
    live = PcmServerSource("v", unix_path=path)
    with pytest.raises(SourceError, match="another process"):
        await live.start()
    await src.aclose()


STDIN_SCRIPT = """
import asyncio, json, sys
import numpy as np
from streamer.sources.pcm import PcmFormat, StdinSource
from streamer.messages import AudioChunk

async def main():
    src = StdinSource("in", PcmFormat(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])),
                      split_channels=sys.argv[4] == "1", chunk_ms=50)
    out = {}
    async for ev in src:
        d = out.setdefault(ev.stream_id, {"n": 0, "samples": [], "end": None})
        if isinstance(ev, AudioChunk):
            assert ev.start_sample == d["n"]
            d["n"] += len(ev.samples)
            d["samples"].append(ev.samples)
        else:
            d["end"] = [ev.total_samples, ev.reason]
    for d in out.values():
        x = np.concatenate(d.pop("samples"))
        spec = np.abs(np.fft.rfft(x[2000:14000]))
        d["peak_hz"] = float(np.argmax(spec) * 16000 / 12000)
        d["max"] = float(np.abs(x).max())
    print(json.dumps({"streams": out, "stats": src.stats}))

asyncio.run(main())
"""


@pytest.mark.parametrize(("fmt", "split"), [("s16le", False), ("s32le", True)])
def test_stdin_in_a_subprocess(fmt: str, split: bool) -> None:
    stereo = np.stack([tone(300, 22050, 1.0), tone(1500, 22050, 1.0, 0.2)], axis=1)
    data = float_to_bytes(stereo, fmt) + b"\x01"  # a stray trailing byte: a partial frame
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", STDIN_SCRIPT, fmt, "22050", "2", "1" if split else "0"],
        input=data,
        capture_output=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    streams = result["streams"]
    assert result["stats"]["partial_frame_bytes_dropped"] == 1
    if split:
        assert set(streams) == {"in.ch0", "in.ch1"}
        assert abs(streams["in.ch0"]["peak_hz"] - 300) < 3
        assert abs(streams["in.ch1"]["peak_hz"] - 1500) < 3
    else:
        assert set(streams) == {"in"}
    for d in streams.values():
        assert abs(d["n"] - 16000) <= 2
        assert d["end"] == [d["n"], "eof"]


async def test_drop_oldest_queue_never_drops_stream_ends() -> None:
    from streamer.sources.base import DropOldestQueue

    q = DropOldestQueue(2)
    chunk = [AudioChunk("a", np.zeros(10, np.float32), i * 10, 0.0) for i in range(4)]
    q.put_nowait(chunk[0])
    q.put_nowait(StreamEnded("b", 0, "eof"))
    for c in chunk[1:]:
        q.put_nowait(c)
    q.put_nowait(None)
    assert q.dropped_chunks == 2 and q.dropped_samples == 20
    assert [await q.get() for _ in range(4)] == [StreamEnded("b", 0, "eof"), chunk[2], chunk[3], None]
    with pytest.raises(ValueError):
        DropOldestQueue(0)
