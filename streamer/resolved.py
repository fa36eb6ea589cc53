"""What the configuration means at run time: the window schedule against the engine's manifest, and the
sources' parsed specs with their ids. Kept apart from the daemon, which only runs what these resolve."""

from __future__ import annotations

import dataclasses
from typing import Any

from streamer.config import EmotrackConfig
from streamer.segmenter import WindowConfig
from streamer.sources.base import SourceError
from streamer.sources.spec import SourceSpec, parse_spec


def window_config(cfg: EmotrackConfig, manifest: Any) -> WindowConfig:
    """The manifest's window schedule with any configured ``[windows]`` values on top."""
    base = WindowConfig.from_manifest(manifest, cfg.windows.min_segment_s)
    overrides = {
        k: v
        for k, v in dataclasses.asdict(cfg.windows).items()
        if v is not None and k in {f.name for f in dataclasses.fields(WindowConfig)}
    }
    try:
        return dataclasses.replace(base, **overrides)
    except ValueError as exc:
        from streamer.configload import ConfigError

        raise ConfigError(f"config section windows: {exc}") from None


def source_specs(cfg: EmotrackConfig) -> list[SourceSpec]:
    """Parsed specs with the configured ids and ``daemon.realtime`` applied to files."""
    specs = []
    for s in cfg.sources:
        spec = parse_spec(s.spec)
        if s.id:
            spec = dataclasses.replace(spec, stream_id=parse_spec(f"{s.spec}?id={s.id}").stream_id)
        if cfg.daemon.realtime and spec.kind == "file":
            spec = dataclasses.replace(spec, realtime=True)
        specs.append(spec)
    if sum(s.kind == "stdin" for s in specs) > 1:  # both would read fd 0, interleaving nonsense
        raise SourceError("sources: stdin is given more than once (a process has one standard input)")
    ids = [s.stream_id for s in specs]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SourceError(f"sources: stream id {sorted(dup)[0]!r} is used twice (set id= on one of them)")
    return specs


def check_config(cfg: EmotrackConfig) -> WindowConfig:
    """Everything ``run`` checks before it opens anything: the window schedule against the engine's
    manifest and the sources' specs. ``emotrack config --check`` runs this same function, so it passes
    exactly what ``run`` accepts."""
    from engines import read_manifest, resolve_engine_path

    manifest = read_manifest(resolve_engine_path(cfg.engine.path))
    windows = window_config(cfg, manifest)
    source_specs(cfg)
    return windows
