"""Prometheus endpoint: real records in, a real HTTP GET out, the exposition parsed line by line."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.error
import urllib.request

import pytest

from streamer.metrics import MetricsConfig, MetricsError, MetricsSink
from streamer.records import EmotionValues, StateRecord
from tests.sample_records import ENGINE, utterance, window

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def _get(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def parse(text: str) -> dict[str, float]:
    """``name{labels}`` -> value; every non-comment line must be a valid sample."""
    out: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a valid exposition line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    assert types["emotrack_window_latency_seconds"] == "histogram"
    assert types["emotrack_windows_scored_total"] == "counter"
    return out


def state(stream: str, label: str, status: str = "speaking") -> StateRecord:
    return StateRecord(
        stream,
        3,
        status,
        4.5,
        1.8e9 + 4.5,
        EmotionValues(label, {label: 0.9}, 0.25, -0.5, 0.125),
        ENGINE,
    )


async def test_counters_histogram_and_stream_gauges_over_http() -> None:
    clock = [1.8e9 + 2.3]  # window 0 ends at wall 1.8e9 + 2.0: 0.3 s latency
    connected = [True]
    sink = MetricsSink(
        MetricsConfig(enabled=True, port=0), broker_connected=lambda: connected[0], clock=lambda: clock[0]
    )
    await sink.start()
    try:
        assert sink.port
        await sink.emit(window("desk", 0))
        clock[0] = 1.8e9 + 2.5 + 20.0  # window 1 ends at +2.5: 20 s late
        await sink.emit(window("desk", 1))
        await sink.emit(utterance("desk", 2))
        await sink.emit(state("desk", "happy"))
        await sink.emit(state('we"ird\\', "sad", "silent"))
        code, ctype, body = await asyncio.to_thread(_get, sink.port)
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        m = parse(body)
        assert m["emotrack_windows_scored_total"] == 2
        assert m["emotrack_utterances_total"] == 1
        assert m['emotrack_window_latency_seconds_bucket{le="0.25"}'] == 0
        assert m['emotrack_window_latency_seconds_bucket{le="0.5"}'] == 1
        assert m['emotrack_window_latency_seconds_bucket{le="30"}'] == 2
        assert m['emotrack_window_latency_seconds_bucket{le="+Inf"}'] == 2
        assert m["emotrack_window_latency_seconds_sum"] == pytest.approx(20.3, abs=1e-6)
        assert m["emotrack_broker_connected"] == 1
        assert m['emotrack_stream_valence{stream="desk"}'] == 0.25
        assert m['emotrack_stream_arousal{stream="desk"}'] == -0.5
        assert m['emotrack_stream_label{stream="desk",label="happy"}'] == 1
        assert m['emotrack_stream_speaking{stream="desk"}'] == 1
        assert m['emotrack_stream_label{stream="we\\"ird\\\\",label="sad"}'] == 1
        # a stream's gauges go when it ends; the broker gauge follows the publisher
        await sink.stream_ended("desk")
        connected[0] = False
        m = parse((await asyncio.to_thread(_get, sink.port))[2])
        assert not any(k.endswith('{stream="desk"}') for k in m)
        assert m["emotrack_broker_connected"] == 0 and m["emotrack_streams"] == 1
        code, _, _ = await asyncio.to_thread(_get, sink.port, "/nope")
        assert code == 404
    finally:
        await sink.close()


async def test_port_in_use_is_one_line_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        sink = MetricsSink(MetricsConfig(enabled=True, port=port))
        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}") as exc:
            await sink.start()
        assert "\n" not in str(exc.value)


async def test_slow_client_does_not_block_others() -> None:
    sink = MetricsSink(MetricsConfig(enabled=True, port=0))
    await sink.start()
    try:
        assert sink.port
        _r, w = await asyncio.open_connection("127.0.0.1", sink.port)
        w.write(b"GET /metrics HTTP/1.1\r\n")  # never finishes its request
        await w.drain()
        code, _, body = await asyncio.to_thread(_get, sink.port)
        assert code == 200 and "emotrack_windows_scored_total 0" in body
        w.close()
    finally:
        await sink.close()
