"""The sink protocol every output implements, and the helpers they share."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from streamer.records import Record


class SinkError(Exception):
    """A problem with an output that the user can fix (bad setting, unusable path, no broker).

    The message is one line naming the thing; the CLI prints it without a traceback.
    """


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How a stream ended, told to every sink: why (``eof``, ``disconnected``, ``sigterm``, ``sigint``,
    ``device-lost``, ``truncated``, ``error: ...``, ``shutdown``), how much audio it had, and whether it
    was a socket client's (``ephemeral``: nothing of it should outlive it, e.g. retained MQTT state)."""

    reason: str = "ended"
    audio_s: float | None = None
    ephemeral: bool = False


@runtime_checkable
class Sink(Protocol):
    """An output of records. ``emit`` must return quickly: sinks own bounded, counted buffers."""

    async def start(self) -> None: ...

    async def emit(self, record: Record) -> None: ...

    async def stream_ended(self, stream: str, end: StreamEnd | None = None) -> None: ...

    async def close(self) -> None: ...


def record_json(record: Record) -> str:
    """The compact JSON payload of a record (same bytes for MQTT and log lines)."""
    return to_json(record.to_dict())


def to_json(obj: Any) -> str:
    """Compact, strict JSON: a NaN/inf (a broken engine output) becomes null, never invalid JSON."""
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")
_MAX_NAME = 100


def safe_name(stream: str) -> str:
    """A stream id made safe as one MQTT topic level or one path component.

    MQTT wildcards (``+``, ``#``), separators (``/``), NUL, spaces and other unusual characters
    become ``_``; a name of only dots or empty becomes ``_`` so it cannot escape a directory.
    """
    name = _UNSAFE.sub("_", stream)
    if name.strip(".") == "":
        name = "_" * max(1, len(name))
    if len(name) > _MAX_NAME:  # file names are limited to 255 bytes; keep ids distinct by a hash
        digest = hashlib.sha1(stream.encode(), usedforsecurity=False).hexdigest()[:12]
        name = f"{name[: _MAX_NAME - 13]}-{digest}"
    return name
