"""Source specs as written in config files and on the command line, and opening them.

``file:PATH`` (or a bare path), ``mic:NAME_OR_INDEX`` (``mic:`` = default device), ``stdin``,
``tcp://HOST:PORT`` and ``unix:PATH``, each optionally followed by ``?key=value&...`` with keys
``id``, ``realtime``, ``split``, ``loop``, ``format``, ``rate``, ``channels``, ``chunk_ms``, ``reopen``,
``buffer_s`` (microphone ring buffer, seconds of audio kept before the oldest is dropped), ``backpressure``
(a TCP/Unix server stops reading while the pipeline is behind, instead of dropping the oldest audio).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

from streamer.audio import SAMPLE_FORMATS
from streamer.sources.base import AudioSource, SourceError

SourceKind = Literal["file", "mic", "stdin", "tcp", "unix"]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}
_KNOWN = {
    "id",
    "realtime",
    "split",
    "loop",
    "format",
    "rate",
    "channels",
    "chunk_ms",
    "reopen",
    "buffer_s",
    "backpressure",
}
_PCM_KINDS = ("stdin", "tcp", "unix")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed source spec; ``target`` is the path, device (name/index, "" = default) or host."""

    kind: SourceKind
    target: str
    stream_id: str
    port: int = 0
    realtime: bool = False
    split: bool = False
    loop: bool = False
    reopen: bool = False
    sample_format: str = "s16le"
    rate: int | None = None  # None: the file's / the device's rate; 16000 for raw PCM
    channels: int | None = None  # None: the file's; 1 for mic and raw PCM
    chunk_ms: float | None = None  # None: the daemon's configured chunk size
    buffer_s: float = 5.0  # microphone ring buffer (audio the daemon may fall behind by before drops)
    backpressure: bool = False  # PCM servers: slow the client (TCP flow control) instead of dropping
    text: str = ""  # the spec as the user wrote it, for messages


def _default_id(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    return cleaned[:64] or "stream"


def _split_options(text: str) -> tuple[str, dict[str, str]]:
    """Split off a trailing ``?k=v&...`` (only when it looks like options: a path may contain '?')."""
    head, sep, tail = text.rpartition("?")
    if not sep or "=" not in tail:
        return text, {}
    pairs = parse_qsl(tail, keep_blank_values=True)
    if "/" in tail and not all(k in _KNOWN for k, _ in pairs):  # a '?' inside a path, not options
        return text, {}
    opts: dict[str, str] = {}
    for k, v in pairs:
        if k not in _KNOWN:
            raise SourceError(f"source {text!r}: unknown option {k!r} (known: {', '.join(sorted(_KNOWN))})")
        if k in opts:
            raise SourceError(f"source {text!r}: option {k!r} given twice")
        opts[k] = v
    return head, opts


def _bool(text: str, key: str, value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError:
        raise SourceError(f"source {text!r}: option {key}={value!r} is not a boolean (use 1/0)") from None


def _int(text: str, key: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SourceError(f"source {text!r}: option {key}={value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise SourceError(f"source {text!r}: option {key}={n} is outside {lo}..{hi}")
    return n


def _host_port(text: str, rest: str) -> tuple[str, int]:
    host, sep, port_s = rest.rpartition(":")
    if not sep or not port_s.isdigit():
        raise SourceError(f"source {text!r}: expected tcp://HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_s)
    if port > 65535:
        raise SourceError(f"source {text!r}: port {port} is outside 0..65535")
    return host or "127.0.0.1", port


def parse_spec(text: str) -> SourceSpec:
    """Parse one spec string; any problem raises ``SourceError`` naming the spec."""
    raw = text.strip()
    if not raw:
        raise SourceError("empty source spec (use file:PATH, mic:NAME, stdin, tcp://HOST:PORT or unix:PATH)")
    body, opts = _split_options(raw)
    port = 0
    kind: SourceKind
    if body == "stdin" or body == "-":
        kind, target, default_id = "stdin", "", "stdin"
    elif body.startswith("tcp://"):
        host, port = _host_port(raw, body[len("tcp://") :])
        kind, target, default_id = "tcp", host, f"tcp-{port}"
    elif body.startswith("unix:"):
        target = body[len("unix:") :]
        if not target:
            raise SourceError(f"source {raw!r}: expected unix:PATH")
        kind, default_id = "unix", _default_id(Path(target).stem)
    elif body == "mic" or body.startswith("mic:"):
        target = body[4:].strip()
        kind, default_id = "mic", ("mic" if not target else _default_id(f"mic-{target}"))
    else:
        target = body[len("file:") :] if body.startswith("file:") else body
        if not target:
            raise SourceError(f"source {raw!r}: expected file:PATH")
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target):
            raise SourceError(f"source {raw!r}: unsupported scheme (use file:, mic:, stdin, tcp:// or unix:)")
        kind, default_id = "file", _default_id(Path(target).stem)

    stream_id = opts.get("id", default_id)
    if not _ID_RE.match(stream_id):
        raise SourceError(
            f"source {raw!r}: invalid id {stream_id!r} (use 1-64 letters, digits, '_', '.', '-')"
        )
    fmt = opts.get("format", "s16le").lower()
    if fmt not in SAMPLE_FORMATS:
        raise SourceError(f"source {raw!r}: unknown format {fmt!r} (use {'|'.join(SAMPLE_FORMATS)})")
    if "format" in opts and kind not in _PCM_KINDS:
        raise SourceError(f"source {raw!r}: format= applies only to raw PCM (stdin, tcp://, unix:)")
    if ("realtime" in opts or "loop" in opts) and kind != "file":
        raise SourceError(f"source {raw!r}: realtime= and loop= apply only to files")
    if ("reopen" in opts or "buffer_s" in opts) and kind != "mic":
        raise SourceError(f"source {raw!r}: reopen= and buffer_s= apply only to mic:")
    if "backpressure" in opts and kind not in ("tcp", "unix"):
        raise SourceError(f"source {raw!r}: backpressure= applies only to tcp:// and unix: servers")
    if kind == "file" and ("rate" in opts or "channels" in opts):
        raise SourceError(f"source {raw!r}: rate= and channels= come from the file itself")
    return SourceSpec(
        kind=kind,
        target=target,
        stream_id=stream_id,
        port=port,
        realtime=_bool(raw, "realtime", opts["realtime"]) if "realtime" in opts else False,
        split=_bool(raw, "split", opts["split"]) if "split" in opts else False,
        loop=_bool(raw, "loop", opts["loop"]) if "loop" in opts else False,
        reopen=_bool(raw, "reopen", opts["reopen"]) if "reopen" in opts else False,
        sample_format=fmt,
        rate=_int(raw, "rate", opts["rate"], 1000, 768_000) if "rate" in opts else None,
        channels=_int(raw, "channels", opts["channels"], 1, 64) if "channels" in opts else None,
        chunk_ms=float(_int(raw, "chunk_ms", opts["chunk_ms"], 10, 1000)) if "chunk_ms" in opts else None,
        buffer_s=float(_int(raw, "buffer_s", opts["buffer_s"], 1, 3600)) if "buffer_s" in opts else 5.0,
        backpressure=_bool(raw, "backpressure", opts["backpressure"]) if "backpressure" in opts else False,
        text=raw,
    )


def open_source(spec: SourceSpec | str, *, chunk_ms: float | None = None) -> AudioSource:
    """Build the source a spec names (files are opened now so errors surface before the daemon starts)."""
    s = parse_spec(spec) if isinstance(spec, str) else spec
    ms = s.chunk_ms or chunk_ms or 100.0
    if s.kind == "file":
        from streamer.sources.file import FileSource

        return FileSource(
            s.target, s.stream_id, realtime=s.realtime, split_channels=s.split, chunk_ms=ms, loop=s.loop
        )
    if s.kind == "mic":
        from streamer.sources.mic import MicSource

        device: str | int | None = int(s.target) if s.target.isdigit() else (s.target or None)
        return MicSource(
            device,
            s.stream_id,
            rate=s.rate,
            channels=s.channels or 1,
            split_channels=s.split,
            chunk_ms=ms,
            reopen=s.reopen,
            buffer_s=s.buffer_s,
        )
    from streamer.sources.pcm import PcmFormat, PcmServerSource, StdinSource, session_token

    fmt = PcmFormat(s.sample_format, s.rate or 16000, s.channels or 1)
    if s.kind == "stdin":
        return StdinSource(s.stream_id, fmt, split_channels=s.split, chunk_ms=ms)
    if s.kind == "tcp":
        return PcmServerSource(
            s.stream_id,
            fmt,
            host=s.target,
            port=s.port,
            split_channels=s.split,
            chunk_ms=ms,
            backpressure=s.backpressure,
            session=session_token(),
        )
    return PcmServerSource(
        s.stream_id,
        fmt,
        unix_path=s.target,
        split_channels=s.split,
        chunk_ms=ms,
        backpressure=s.backpressure,
        session=session_token(),
    )


__all__ = ["SourceKind", "SourceSpec", "open_source", "parse_spec"]
