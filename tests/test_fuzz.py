"""Property-based tests (hypothesis): hostile input gives a clear error or a valid result, never a
crash, and never disturbs other streams. PCM socket bytes, config tables, engine manifests."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engines import EngineError, read_manifest
from engines.manifest import EngineManifest
from streamer.config import EmotrackConfig, apply_env, apply_table
from streamer.configload import ConfigError
from streamer.messages import AudioChunk, StreamEnded
from streamer.sources.pcm import PcmFormat, PcmServerSource, _PcmStream

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- PCM bytes ------------------------------------------------------------------------------------
@FAST
@given(
    fmt=st.sampled_from(["s16le", "s32le", "f32le"]),
    channels=st.integers(1, 3),
    rate=st.sampled_from([8000, 16000, 44100]),
    pieces=st.lists(st.binary(min_size=0, max_size=700), max_size=12),
)
def test_pcm_stream_decodes_any_bytes_to_finite_bounded_audio(
    fmt: str, channels: int, rate: int, pieces: list[bytes]
) -> None:
    stream = _PcmStream("f", PcmFormat(fmt, rate, channels), False, 50.0)
    chunks: list[AudioChunk] = []
    for p in pieces:
        chunks += stream.feed(p)
    tail = stream.end("eof")
    chunks += [c for c in tail if isinstance(c, AudioChunk)]
    assert isinstance(tail[-1], StreamEnded)
    pos = 0
    for c in chunks:
        assert c.samples.dtype == np.float32 and c.start_sample == pos
        assert np.isfinite(c.samples).all() and np.abs(c.samples).max(initial=0) <= 1.0
        pos += len(c.samples)
    assert tail[-1].total_samples == pos
    frame = {"s16le": 2, "s32le": 4, "f32le": 4}[fmt] * channels
    assert stream.partial_bytes == sum(map(len, pieces)) % frame


async def _socket_run(garbage: list[bytes]) -> tuple[list[AudioChunk], dict[str, str]]:
    """A good client (a sine) and a hostile one (random bytes, cut mid-frame) on one server."""
    src = PcmServerSource("good", PcmFormat("s16le", 16000, 1), port=0, chunk_ms=100)
    await src.start()
    good: list[AudioChunk] = []
    ended: dict[str, str] = {}

    async def consume() -> None:
        async for ev in src:
            if isinstance(ev, AudioChunk) and ev.stream_id == "good":
                good.append(ev)
            elif isinstance(ev, StreamEnded):
                ended[ev.stream_id] = ev.reason
                if len(ended) == 2:
                    return

    reader = asyncio.create_task(consume())
    _, w1 = await asyncio.open_connection("127.0.0.1", src.port)
    sine = (np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000) * 12000).astype("<i2").tobytes()
    w1.write(sine[:10000])
    await w1.drain()
    await asyncio.sleep(0.05)  # the good client connects first: it is stream "good"
    _, w2 = await asyncio.open_connection("127.0.0.1", src.port)
    for g in garbage:
        w2.write(g)
        await w2.drain()
    w2.write(b"\x01")  # an odd byte: the hostile client leaves mid-frame
    await w2.drain()
    w2.close()
    w1.write(sine[10000:])
    await w1.drain()
    w1.close()
    await asyncio.wait_for(reader, 20)
    await src.aclose()
    return good, ended


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.lists(st.binary(min_size=1, max_size=3000), min_size=0, max_size=5))
def test_pcm_socket_garbage_client_does_not_disturb_another(garbage: list[bytes]) -> None:
    good, ended = asyncio.run(_socket_run(garbage))
    assert ended.get("good") == "disconnected" and len(ended) == 2
    assert sum(len(c.samples) for c in good) == 16000  # every sample of the good stream, in order
    assert [c.start_sample for c in good] == list(np.cumsum([0] + [len(c.samples) for c in good[:-1]]))


# -- configuration --------------------------------------------------------------------------------
def _section_fields() -> dict[str, list[str]]:
    cfg = EmotrackConfig()
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = [g.name for g in dataclasses.fields(v)]
    return out


SECTIONS = _section_fields()
scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["auto", "hold", "decay", "json", "always", "", "mqtt://h:1", "file:/nope.wav"]),
)
value = st.one_of(scalar, st.lists(scalar, max_size=3))
section_table = st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda s: st.tuples(
        st.just(s),
        st.dictionaries(st.sampled_from([*SECTIONS[s], "bogus"]), value, max_size=4) | value,
    )
)
table = st.lists(section_table, max_size=4).map(dict) | st.dictionaries(
    st.sampled_from(["sources", "stdout", "nope"]), value, max_size=2
)


def _norm(x: Any) -> Any:
    """A value as the loader stores it, comparable with the value given (ints in float fields, lists in
    tuple fields, paths, enums)."""
    if isinstance(x, enum.Enum):
        return _norm(x.value)
    if isinstance(x, list | tuple):
        return [_norm(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return x


def _applied(got: Any, wanted: Any) -> bool:
    if isinstance(got, Path):
        return isinstance(wanted, str | Path) and got == Path(wanted).expanduser()
    return bool(_norm(got) == _norm(wanted))


@FAST
@given(t=table)
@example(t={"inference": {"max_batch": 16, "max_wait_ms": 2}, "stdout": "json"})
def test_config_table_is_applied_exactly_or_config_error(t: dict[str, Any]) -> None:
    """Accepted: every key given holds the value given (nothing dropped or altered) within its declared
    range. Refused: one ConfigError naming the key."""
    try:
        cfg = apply_table(EmotrackConfig(), t)
    except ConfigError as exc:
        assert str(exc).startswith("config ") and "\n" not in str(exc), exc
        return
    for name, wanted in t.items():
        if name == "sources":
            assert [s.spec for s in cfg.sources] == ([wanted] if isinstance(wanted, str) else list(wanted))
        elif name == "stdout":
            assert cfg.stdout == wanted
        else:
            section = getattr(cfg, name)
            for key, v in wanted.items():
                assert _applied(getattr(section, key), v), (name, key, getattr(section, key), v)
    for name in SECTIONS:
        section = getattr(cfg, name)
        for f in dataclasses.fields(section):
            v, lo, hi = getattr(section, f.name), f.metadata.get("min"), f.metadata.get("max")
            if isinstance(v, int | float) and not isinstance(v, bool):
                assert (lo is None or v >= lo) and (hi is None or v <= hi), (name, f.name, v)


@FAST
@given(
    env=st.dictionaries(
        st.sampled_from(
            [
                *[f"EMOTRACK_{s.upper()}__{k.upper()}" for s, ks in SECTIONS.items() for k in ks],
                *["EMOTRACK_SOURCES", "EMOTRACK_STDOUT", "EMOTRACK_BOGUS__X", "EMOTRACK_MQTT__NOPE"],
            ]
        ),
        st.text(max_size=16),
        max_size=4,
    )
)
@example(env={"EMOTRACK_LOGS__DIRECTORY": "~nosuchuser-emotrack/x"})  # found by hypothesis
def test_config_environment_is_valid_or_config_error(env: dict[str, str]) -> None:
    try:
        apply_env(EmotrackConfig(), env)
    except ConfigError as exc:  # the CLI prints it on one line (whitespace collapsed)
        assert str(exc).startswith(("config ", "environment ")), exc


# -- engine manifests -----------------------------------------------------------------------------
def _valid_manifest() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": "fuzz",
        "version": "1.0.0",
        "labels": ["neutral", "happy"],
        "outputs": {"logits": True, "vad": True},
        "vad_range": [-1.0, 1.0],
        "sample_rate": 16000,
        "window_s": 2.0,
        "hop_s": 0.5,
        "min_window_s": 0.5,
        "max_window_s": 8.0,
        "padding": "repeat",
        "sha256": {"model.onnx": "0" * 64},
        "provenance": {"training_data": "x", "code_version": "x", "created": "2026-01-01", "license": "MIT"},
    }


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=12,
)


@FAST
@given(key=st.sampled_from(sorted(_valid_manifest())), new=json_value, drop=st.booleans())
def test_manifest_mutation_is_valid_or_engine_error(key: str, new: Any, drop: bool) -> None:
    data = _valid_manifest()
    if drop:
        del data[key]
    else:
        data[key] = new
    try:
        m = EngineManifest.from_dict(data)
        m.validate()
    except EngineError as exc:
        assert "\n" not in str(exc)
        return
    assert m.window_samples > 0 and math.isfinite(m.hop_s) and m.hop_s > 0


@FAST
@given(doc=json_value | st.binary(max_size=64).map(lambda b: b.decode("latin-1")))
def test_manifest_file_with_any_content_is_engine_error(doc: Any, tmp_path_factory: Any) -> None:
    """Random content is never a manifest (a valid one needs 14 keys; at most 12 leaves are drawn), so
    reading it must raise, in one line naming the file."""
    d: Path = tmp_path_factory.mktemp("m")
    (d / "engine.json").write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    with pytest.raises(EngineError) as err:
        read_manifest(d)
    assert str(d / "engine.json") in str(err.value) and "\n" not in str(err.value)


def test_manifest_file_reader_accepts_a_valid_manifest(tmp_path: Path) -> None:
    """The counterpart of the test above: the reader is not simply refusing everything."""
    (tmp_path / "engine.json").write_text(json.dumps(_valid_manifest()), encoding="utf-8")
    assert read_manifest(tmp_path).name == "fuzz"
