"""The daemon's configuration: one typed dataclass tree, loaded defaults < TOML < environment < flags.

Environment overrides are ``EMOTRACK_<SECTION>__<KEY>`` (e.g. ``EMOTRACK_INFERENCE__MAX_BATCH=16``) and
``EMOTRACK_SOURCES`` (a spec, or a TOML array of specs). Every error is a ``ConfigError`` whose one-line
message names the key and the expected type or range.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from streamer.centring import CentringConfig
from streamer.configload import (
    ConfigError,
    apply_text,
    build,
    coerce,
    describe,
    field_comments,
    field_types,
    toml_value,
)
from streamer.metrics import MetricsConfig
from streamer.sinks.mqtt_config import MqttConfig
from streamer.smoothing import SmoothingConfig
from streamer.vad import VadConfig

__all__ = ["ConfigError", "EmotrackConfig", "defaults_toml", "load_config"]

ENV_PREFIX = "EMOTRACK_"


def _m(help: str, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"help": help, "min": lo, "max": hi}


@dataclass(frozen=True)
class EngineSection:
    path: Path | None = field(default=None, metadata=_m("engine directory or bundled name (default | fast)"))
    backend: Literal["auto", "tensorrt", "onnxruntime-trt", "onnxruntime-cuda", "onnxruntime-cpu"] = field(
        default="auto", metadata=_m("execution backend")
    )
    intra_op_threads: int | None = field(default=None, metadata=_m("threads inside one op", 1, 256))
    inter_op_threads: int | None = field(default=None, metadata=_m("threads across ops", 1, 256))


def engine_threads(intra_op_threads: int | None, workers: int, cpus: int | None = None) -> int | None:
    """The intra-op threads each engine call gets: as configured, else the CPU cores shared among the
    ``workers`` calls that run at once (None, the runtime's own default, for a single worker)."""
    if intra_op_threads is not None or workers <= 1:
        return intra_op_threads
    return max(1, (cpus if cpus is not None else os.cpu_count() or 1) // workers)


@dataclass(frozen=True)
class SourceSection:
    spec: str = field(metadata=_m("file:PATH | mic:NAME|INDEX | stdin | tcp://HOST:PORT | unix:PATH"))
    id: str | None = field(default=None, metadata=_m("stream id; none = derived from the spec"))


@dataclass(frozen=True)
class WindowsSection:
    window_s: float | None = field(
        default=None, metadata=_m("window length; none = engine manifest", 0.1, 60)
    )
    hop_s: float | None = field(default=None, metadata=_m("window hop; none = engine manifest", 0.05, 60))
    min_window_s: float | None = field(
        default=None, metadata=_m("engine input minimum (padded up)", 0.05, 60)
    )
    max_window_s: float | None = field(default=None, metadata=_m("longest window", 0.1, 120))
    min_segment_s: float = field(default=0.25, metadata=_m("shortest utterance still scored", 0.01, 60))


@dataclass(frozen=True)
class InferenceSection:
    # Defaults for the bundled engine on CPU, from `emotrack bench`: ONNX Runtime costs the same per window
    # at batch 1 and 32, so big batches only add latency, and two calls at once use two cores. A GPU
    # engine (TensorRT) wants bigger batches and a few ms of max_wait_ms.
    max_batch: int = field(default=8, metadata=_m("windows per engine call", 1, 4096))
    max_wait_ms: float = field(default=0.0, metadata=_m("wait to fill a batch", 0, 10000))
    max_pending: int = field(default=256, metadata=_m("queued windows before the oldest is dropped", 1))
    workers: int = field(
        default=2,
        metadata=_m("engine calls at once; unset engine.intra_op_threads = CPU cores / workers", 1, 64),
    )
    max_in_flight: int = field(default=64, metadata=_m("per-stream events awaiting scores (backpressure)", 1))
    # 50 ms: a window waits on average half a chunk for its last sample to arrive (bench: window-end latency)
    chunk_ms: float = field(default=50.0, metadata=_m("audio chunk size read from sources", 10, 1000))


@dataclass(frozen=True)
class LogsSection:
    """Conversation logs (``streamer.sinks.logfile.LogConfig`` plus on/off and the systemd default)."""

    enabled: bool = field(default=True, metadata=_m("write conversation logs"))
    directory: Path | None = field(
        default=None, metadata=_m("none = $LOGS_DIRECTORY, $STATE_DIRECTORY (systemd) or ./emotrack-logs")
    )
    rotate_bytes: int | None = field(
        default=50_000_000, metadata=_m("rotate past this size; none = never", 1024)
    )
    rotate_seconds: float | None = field(
        default=86_400.0, metadata=_m("rotate past this age; none = never", 1)
    )
    fsync: bool = field(default=False, metadata=_m("fsync after every line (durable, slower)"))
    queue_size: int = field(default=10_000, metadata=_m("records queued for the writer; oldest dropped", 1))


@dataclass(frozen=True)
class DaemonSection:
    stats_interval_s: float = field(default=10.0, metadata=_m("seconds between <prefix>/stats", 0.1, 3600))
    watchdog: bool = field(default=True, metadata=_m("pet the systemd watchdog while the pipeline advances"))
    realtime: bool = field(default=False, metadata=_m("pace file sources at real time"))
    drain_timeout_s: float = field(default=30.0, metadata=_m("longest shutdown drain", 0.1, 600))
    broker_host: str = field(
        default="127.0.0.1", metadata=_m("embedded broker address (mqtt url/host unset)")
    )
    broker_port: int = field(default=1883, metadata=_m("embedded broker port; 0 = any free port", 0, 65535))
    state_directory: Path | None = field(
        default=None,
        metadata=_m("MQTT spool and per-stream seq store; none = $STATE_DIRECTORY (systemd), else off"),
    )


@dataclass(frozen=True)
class EmotrackConfig:
    engine: EngineSection = field(default_factory=EngineSection)
    sources: tuple[SourceSection, ...] = ()
    vad: VadConfig = field(default_factory=VadConfig)
    windows: WindowsSection = field(default_factory=WindowsSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    centring: CentringConfig = field(default_factory=CentringConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    logs: LogsSection = field(default_factory=LogsSection)
    stdout: Literal["off", "text", "json"] = "off"
    daemon: DaemonSection = field(default_factory=DaemonSection)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def embedded_broker(self) -> bool:
        """No broker configured (neither mqtt.url nor mqtt.host): the daemon starts its own."""
        return self.mqtt.url is None and self.mqtt.host is None

    def log_directory(self, environ: Mapping[str, str] | None = None) -> Path:
        """Configured, else systemd's LogsDirectory/StateDirectory, else ./emotrack-logs."""
        if self.logs.directory is not None:
            return self.logs.directory
        env = os.environ if environ is None else environ
        for var in ("LOGS_DIRECTORY", "STATE_DIRECTORY"):
            if env.get(var):
                return Path(env[var].split(":")[0])
        return Path("emotrack-logs")


_SECTIONS = {f.name for f in dataclasses.fields(EmotrackConfig)} - {"sources", "stdout"}


def _sources(value: Any, key: str = "sources") -> tuple[SourceSection, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"config key {key}: expected a list of source specs or tables, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, SourceSection):
            out.append(v)
        elif isinstance(v, str):
            out.append(SourceSection(spec=v))
        elif isinstance(v, dict):
            if "spec" not in v:
                raise ConfigError(f"config key {key}[{i}].spec: missing (a source spec string)")
            out.append(build(SourceSection, v, f"{key}[{i}]"))
        else:
            raise ConfigError(f"config key {key}[{i}]: expected a spec string or a table, got {v!r}")
    return tuple(out)


def apply_table(cfg: EmotrackConfig, table: Mapping[str, Any]) -> EmotrackConfig:
    """``cfg`` with a TOML-shaped table applied on top (unknown sections/keys are errors)."""
    changes: dict[str, Any] = {}
    hints = field_types(EmotrackConfig)
    for name, value in table.items():
        if name == "sources":
            changes[name] = _sources(value)
        elif name == "stdout":
            changes[name] = coerce("stdout", hints["stdout"], value)
        elif name in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config section [{name}]: expected a table, got {value!r}")
            changes[name] = build(hints[name], value, name, base=getattr(cfg, name))
        else:
            known = ", ".join(sorted([*_SECTIONS, "sources", "stdout"]))
            raise ConfigError(f"config key {name}: unknown section (known: {known})")
    return dataclasses.replace(cfg, **changes)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a Latin-1 editor's "é" is the usual cause
        line, byte = exc.object[: exc.start].count(b"\n") + 1, exc.object[exc.start]
        raise ConfigError(
            f"config file {path}: not UTF-8 (byte 0x{byte:02x} on line {line}); save it as UTF-8"
        ) from None


def apply_env(cfg: EmotrackConfig, environ: Mapping[str, str]) -> EmotrackConfig:
    """Apply ``EMOTRACK_<SECTION>__<KEY>`` and ``EMOTRACK_SOURCES`` / ``EMOTRACK_STDOUT``."""
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        text = environ[var]
        if rest == "sources":
            try:
                parsed: Any = tomllib.loads(f"v = {text}")["v"]
            except tomllib.TOMLDecodeError:
                parsed = text
            cfg = dataclasses.replace(cfg, sources=_sources(parsed, var))
        elif rest == "stdout":
            cfg = apply_text(cfg, ["stdout"], text, var)
        elif "__" in rest and rest.split("__", 1)[0] in _SECTIONS:
            cfg = apply_text(cfg, rest.split("__"), text, var)
        elif rest.split("__", 1)[0] in ("config", "debug", "corpora", "shared", "alsa_file_mic"):
            continue  # read elsewhere (config path, CLI debug, corpora and test data), not config keys
        else:
            raise ConfigError(f"environment {var}: unknown setting (use EMOTRACK_<SECTION>__<KEY>)")
    return cfg


def apply_overrides(cfg: EmotrackConfig, overrides: Iterable[tuple[str, str]]) -> EmotrackConfig:
    """Apply ``section.key=value`` strings (the CLI's ``--set``)."""
    for key, text in overrides:
        parts = key.strip().split(".")
        if parts[0] == "sources":
            cfg = dataclasses.replace(cfg, sources=(*cfg.sources, *_sources(text, key)))
        elif parts[0] not in _SECTIONS and parts != ["stdout"]:
            raise ConfigError(f"config key {key}: unknown section")
        else:
            cfg = apply_text(cfg, parts, text, key)
    return cfg


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Iterable[tuple[str, str]] = (),
    flags: Mapping[str, Any] | None = None,
) -> EmotrackConfig:
    """defaults < TOML file < environment < ``--set`` overrides < flags (a TOML-shaped table)."""
    cfg = EmotrackConfig()
    if path is not None:
        cfg = apply_table(cfg, read_toml(path))
    cfg = apply_env(cfg, os.environ if environ is None else environ)
    cfg = apply_overrides(cfg, overrides)
    if flags:
        cfg = apply_table(cfg, flags)
    return cfg


_NOTES = {
    "smoothing": ["# (hop_s is set by the daemon from the effective [windows] hop)"],
    "windows": ["# none = the engine manifest's value"],
    "mqtt": ["# neither url nor host: the daemon starts an embedded broker ([daemon] broker_host/port)"],
}


def defaults_toml() -> str:
    """Every key with its default and a comment: the output of ``emotrack config --defaults``."""
    lines = [
        "# emotrack configuration: every key with its default.",
        "# Environment overrides: EMOTRACK_<SECTION>__<KEY>=value; flags override both.",
        "",
        'stdout = "off"  # "off" | "text" | "json": print records on stdout too',
        "",
        '# One table per source (repeat [[sources]]); or sources = ["file:a.wav", "mic:0"]',
        "# [[sources]]",
        '# spec = "mic:default"  # file:PATH | mic:NAME|INDEX | stdin | tcp://HOST:PORT | unix:PATH',
        '# id = "desk"           # stream id; none = derived from the spec',
    ]
    default = EmotrackConfig()
    for section in dataclasses.fields(EmotrackConfig):
        if section.name not in _SECTIONS:
            continue
        obj = getattr(default, section.name)
        hints = field_types(type(obj))
        comments = field_comments(type(obj))
        lines += ["", f"[{section.name}]", *_NOTES.get(section.name, [])]
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            comment = f.metadata.get("help") or comments.get(f.name, "")
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            rng = (
                f" [{'' if lo is None else lo}..{'' if hi is None else hi}]"
                if (lo, hi) != (None, None)
                else ""
            )
            note = f"  # {describe(hints[f.name])}{rng}" + (f": {comment}" if comment else "")
            if value is None:
                lines.append(f"# {f.name} ={note}")
            else:
                lines.append(f"{f.name} = {toml_value(value)}{note}")
    return "\n".join(lines) + "\n"
