"""Prometheus metrics over HTTP (text exposition format 0.0.4), on asyncio, no dependency.

A sink: it counts the records passing by (windows scored; windows dropped under overload, as the
utterance records report them; utterances), observes each window's latency from the end of its audio
(the window record's ``wall_time``) to the moment the record reaches the sinks, and keeps each live
stream's smoothed state as gauges (``emotrack_stream_label{stream,label} 1`` for the current label).
A stream's gauges are removed when it ends, so scrapes show live streams only. ``GET /metrics``
serves it all; anything else is 404. Connections are read with a size and time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamer.errors import EmotrackError
from streamer.records import Record, StateRecord, UtteranceRecord, WindowRecord
from streamer.sinks.base import StreamEnd

log = logging.getLogger("emotrack.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_REQUEST = 8192
_READ_TIMEOUT_S = 5.0


def _m(help: str, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"help": help, "min": lo, "max": hi}


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` config section."""

    enabled: bool = field(default=False, metadata=_m("serve Prometheus metrics over HTTP"))
    host: str = field(default="127.0.0.1", metadata=_m("address to listen on"))
    port: int = field(default=9464, metadata=_m("port; 0 = any free port", 0, 65535))
    max_streams: int = field(default=1000, metadata=_m("streams with state gauges; oldest dropped", 1))


class MetricsError(EmotrackError):
    """The metrics endpoint cannot listen (address in use, bad host)."""


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    return repr(float(x)) if x == x else "NaN"


@dataclass(slots=True)
class _StreamState:
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    label: str | None = None
    speaking: bool = False
    audio_time: float = 0.0


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, x: float) -> None:
        self.total += 1
        self.sum += x
        for i, b in enumerate(self.buckets):
            if x <= b:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.total}', f"{name}_sum {_num(self.sum)}"]
        out.append(f"{name}_count {self.total}")
        return out


class MetricsSink:
    """Counts records and serves them; see the module docstring."""

    def __init__(
        self,
        cfg: MetricsConfig,
        *,
        broker_connected: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self._connected = broker_connected
        self._clock = clock
        self.windows_scored = 0
        self.windows_dropped = 0
        self.utterances = 0
        self.records = 0
        self.requests = 0
        self.streams_forgotten = 0
        self.latency = Histogram()
        self._streams: dict[str, _StreamState] = {}
        self._server: asyncio.Server | None = None
        self.port: int | None = None  # the bound port (cfg.port may be 0)

    # -- Sink protocol --------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.cfg.host, self.cfg.port)
        except OSError as exc:
            raise MetricsError(
                f"cannot serve metrics on {self.cfg.host}:{self.cfg.port}: {str(exc).rsplit(': ', 1)[-1]}"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics on http://%s:%d/metrics", self.cfg.host, self.port)

    async def emit(self, record: Record) -> None:
        self.records += 1
        if isinstance(record, WindowRecord):
            self.windows_scored += 1
            self.latency.observe(max(0.0, self._clock() - record.wall_time))
        elif isinstance(record, UtteranceRecord):
            self.utterances += 1
            self.windows_dropped += record.dropped
        elif isinstance(record, StateRecord):
            st = self._streams.pop(record.stream, None) or _StreamState()
            self._streams[record.stream] = st  # most recently updated last
            c = record.current
            st.valence, st.arousal, st.dominance, st.label = c.valence, c.arousal, c.dominance, c.label
            st.speaking = record.status == "speaking"
            st.audio_time = record.audio_time
            while len(self._streams) > self.cfg.max_streams:
                self._streams.pop(next(iter(self._streams)))
                self.streams_forgotten += 1

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None:
        self._streams.pop(stream, None)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def counters(self) -> dict[str, int]:
        return {"requests": self.requests, "streams": len(self._streams)}

    # -- exposition -----------------------------------------------------------------------------
    def render(self) -> str:
        """The text exposition of every metric."""
        out: list[str] = []

        def metric(name: str, kind: str, help: str, samples: list[str]) -> None:
            out.extend([f"# HELP {name} {help}", f"# TYPE {name} {kind}", *samples])

        metric(
            "emotrack_windows_scored_total",
            "counter",
            "Windows scored and published.",
            [f"emotrack_windows_scored_total {self.windows_scored}"],
        )
        metric(
            "emotrack_windows_dropped_total",
            "counter",
            "Windows dropped under overload (per utterance).",
            [f"emotrack_windows_dropped_total {self.windows_dropped}"],
        )
        metric(
            "emotrack_utterances_total",
            "counter",
            "Utterances ended.",
            [f"emotrack_utterances_total {self.utterances}"],
        )
        metric(
            "emotrack_records_total",
            "counter",
            "Records that reached the sinks.",
            [f"emotrack_records_total {self.records}"],
        )
        metric(
            "emotrack_window_latency_seconds",
            "histogram",
            "From the end of a window's audio to its record reaching the sinks.",
            self.latency.lines("emotrack_window_latency_seconds"),
        )
        if self._connected is not None:
            metric(
                "emotrack_broker_connected",
                "gauge",
                "1 while the MQTT publisher is connected.",
                [f"emotrack_broker_connected {int(bool(self._connected()))}"],
            )
        streams = list(self._streams.items())
        metric(
            "emotrack_streams", "gauge", "Streams with a live state.", [f"emotrack_streams {len(streams)}"]
        )
        for dim in ("valence", "arousal", "dominance"):
            samples = [
                f'emotrack_stream_{dim}{{stream="{escape_label(s)}"}} {_num(v)}'
                for s, st in streams
                if (v := getattr(st, dim)) is not None
            ]
            metric(f"emotrack_stream_{dim}", "gauge", f"Smoothed {dim} of the stream, -1..1.", samples)
        metric(
            "emotrack_stream_label",
            "gauge",
            "1 for the stream's current smoothed label.",
            [
                f'emotrack_stream_label{{stream="{escape_label(s)}",label="{escape_label(st.label)}"}} 1'
                for s, st in streams
                if st.label is not None
            ],
        )
        metric(
            "emotrack_stream_speaking",
            "gauge",
            "1 while the stream is inside an utterance.",
            [
                f'emotrack_stream_speaking{{stream="{escape_label(s)}"}} {int(st.speaking)}'
                for s, st in streams
            ],
        )
        metric(
            "emotrack_stream_audio_seconds",
            "gauge",
            "Audio time of the stream's latest state.",
            [
                f'emotrack_stream_audio_seconds{{stream="{escape_label(s)}"}} {_num(st.audio_time)}'
                for s, st in streams
            ],
        )
        return "\n".join(out) + "\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > _MAX_REQUEST:
                await self._respond(writer, 431, "Request Header Fields Too Large", "too large\n")
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
                await self._respond(writer, 405, "Method Not Allowed", "GET /metrics\n")
                return
            path = parts[1].split("?", 1)[0]
            if path != "/metrics":
                await self._respond(writer, 404, "Not Found", "emotrack metrics are at /metrics\n")
                return
            self.requests += 1
            await self._respond(writer, 200, "OK", self.render(), head_only=parts[0] == "HEAD")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, code: int, reason: str, body: str, *, head_only: bool = False
    ) -> None:
        data = body.encode()
        ctype = CONTENT_TYPE if code == 200 else "text/plain; charset=utf-8"
        header = (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(header if head_only else header + data)
        await writer.drain()
